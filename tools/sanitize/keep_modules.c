/* Preloaded under LeakSanitizer only: dlclose() leaves modules loaded. Open MPI unloads its
 * components (mca_*.so) in MPI_Finalize; their allocations would then be reported at exit from an
 * "unknown module", which no suppression can name. Kept loaded, they are named and suppressed. */
int dlclose(void* handle) {
  (void)handle;
  return 0;
}
