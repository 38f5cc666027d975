#!/usr/bin/python3
"""An independent reader of a run's TensorBoard event files, for the tests.

    read_tfevents.py RUN_DIR [--hparams]

Reads every events.out.tfevents.* file of RUN_DIR in name order, as TensorBoard does, with a
protobuf wire-format decoder written here and the CRC-32C of python3-crcmod: every record's two
masked CRCs are checked. A SessionLog START at step s discards what was read before it with a
step >= s (TensorBoard's purge of a restarted run). Then the scalars must be exactly those of
RUN_DIR/metrics.jsonl: for every event there, each number under its tag (eval_x -> eval/x,
test_x -> test/x, x -> train/x) at the event's step, as float32 (a value that metrics.jsonl
repeats at one step, the epoch of an evaluation, once: the first); each (tag, step) once. Prints a
summary line; exits 1 naming the first difference. --hparams also prints the HParams plugin's
session-start parameters as JSON.
"""
import glob
import json
import math
import os
import struct
import sys

import crcmod.predefined

crc32c = crcmod.predefined.mkPredefinedCrcFun("crc-32c")


def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def fail(msg):
    print("read_tfevents: " + msg)
    sys.exit(1)


def records(path):
    with open(path, "rb") as f:
        blob = f.read()
    pos = 0
    while pos < len(blob):
        if pos + 12 > len(blob):
            fail(f"{path}: a torn record header at byte {pos}")
        head = blob[pos:pos + 8]
        (length,) = struct.unpack("<Q", head)
        (head_crc,) = struct.unpack("<I", blob[pos + 8:pos + 12])
        if head_crc != masked(head):
            fail(f"{path}: bad length CRC at byte {pos}")
        data = blob[pos + 12:pos + 12 + length]
        if len(data) != length or pos + 16 + length > len(blob):
            fail(f"{path}: a torn record at byte {pos}")
        (data_crc,) = struct.unpack("<I", blob[pos + 12 + length:pos + 16 + length])
        if data_crc != masked(data):
            fail(f"{path}: bad data CRC at byte {pos}")
        yield data
        pos += 16 + length


def fields(buf):
    """(field number, wire type, value) of a protobuf message: ints for varints, bytes otherwise."""
    pos, out = 0, []
    while pos < len(buf):
        key, pos = varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, pos = varint(buf, pos)
        elif wire == 1:
            v, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = varint(buf, pos)
            v, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            v, pos = buf[pos:pos + 4], pos + 4
        else:
            fail(f"wire type {wire} in a message")
        out.append((field, wire, v))
    return out


def varint(buf, pos):
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def first(msg, number, default=None):
    for f, _, v in msg:
        if f == number:
            return v
    return default


def proto_value(buf):  # google.protobuf.Value
    for f, _, v in fields(buf):
        if f == 2:
            return struct.unpack("<d", v)[0]
        if f == 3:
            return v.decode()
        if f == 4:
            return bool(v)
    return None


def main():
    run = sys.argv[1]
    files = sorted(glob.glob(os.path.join(run, "events.out.tfevents.*")))
    if not files:
        fail(f"no event files in {run}")
    scalars = {}  # (tag, step) -> [values]
    starts, hparams = 0, None
    for path in files:
        events = [fields(r) for r in records(path)]
        if not events or first(events[0], 3) != b"brain.Event:2":
            fail(f"{path}: the first record is not the file version brain.Event:2")
        for ev in events:
            step = first(ev, 2, 0)
            log = first(ev, 6)
            if log is not None and first(fields(log), 1) == 1:  # SessionLog START
                starts += 1
                scalars = {k: v for k, v in scalars.items() if k[1] < step}
            summary = first(ev, 5)
            if summary is None:
                continue
            for f, _, value in fields(summary):
                if f != 1:
                    continue
                v = fields(value)
                tag = first(v, 1, b"").decode()
                simple = first(v, 2)
                if simple is not None:
                    scalars.setdefault((tag, step), []).append(struct.unpack("<f", simple)[0])
                meta = first(v, 9)
                if tag == "_hparams_/session_start_info" and meta is not None:
                    plugin = fields(first(fields(meta), 1))
                    if first(plugin, 1) != b"hparams":
                        fail(f"{path}: {tag} without the hparams plugin's name")
                    info = fields(first(fields(first(plugin, 2)), 3))
                    hparams = {}
                    for f2, _, entry in info:
                        if f2 == 1:
                            e = fields(entry)
                            hparams[first(e, 1).decode()] = proto_value(first(e, 2))
    twice = [k for k, v in scalars.items() if len(v) > 1]
    if twice:
        fail(f"{len(twice)} (tag, step) pairs show more than once, e.g. {sorted(twice)[0]}")
    expected = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            e = json.loads(line)
            step = int(e["step"])
            for k, x in e.items():
                if k == "step" or isinstance(x, bool) or not (x is None or isinstance(x, (int, float))):
                    continue
                tag = "eval/" + k[5:] if k.startswith("eval_") else "test/" + k[5:] if k.startswith("test_") else "train/" + k
                f32 = float("nan") if x is None else struct.unpack("<f", struct.pack("<f", x))[0]
                expected.setdefault((tag, step), f32)  # the epoch, repeated by evaluations: the first
    got = {k: v[0] for k, v in scalars.items()}
    for k, x in expected.items():
        if k not in got:
            fail(f"{k[0]} at step {k[1]} is in metrics.jsonl but not in the event files")
        y = got[k]
        if not (x == y or (math.isnan(x) and math.isnan(y))):
            fail(f"{k[0]} at step {k[1]}: {y!r} in the event files, {x!r} in metrics.jsonl")
    extra = sorted(set(got) - set(expected))
    if extra:
        fail(f"{extra[0][0]} at step {extra[0][1]} is in the event files but not in metrics.jsonl")
    steps = sorted({k[1] for k in got})
    print(f"read_tfevents: {len(files)} files, {len(got)} scalars under {len({k[0] for k in got})} tags at "
          f"{len(steps)} steps, {starts} session starts: all records' CRCs good, equal to metrics.jsonl")
    if "--hparams" in sys.argv:
        print("hparams " + json.dumps(hparams, sort_keys=True))


main()
