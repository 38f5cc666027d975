// The numerical-anomaly guard's verdicts and its spike windows.
#include "anomaly_guard.h"

#include <cmath>
#include <sstream>

namespace hpctrain::train {

void AnomalyGuard::Window::add(double x) {
  values.push_back(x);
  sum += x;
  sum_sq += x * x;
  if (values.size() > kWindow) {
    const double old = values.front();
    values.pop_front();
    sum -= old;
    sum_sq -= old * old;
  }
}

std::optional<double> AnomalyGuard::Window::zscore(double x) const {
  if (values.size() < kWindow) return std::nullopt;
  const double n = static_cast<double>(values.size());
  const double mean = sum / n;
  const double var = std::max(0.0, sum_sq / n - mean * mean);
  if (var <= 0) return std::nullopt;  // a constant window: no scale to measure a spike against
  return (x - mean) / std::sqrt(var);
}

std::string AnomalyGuard::check(double nonfinite_ranks, double loss, std::optional<double> norm) const {
  if (!enabled()) return "";
  std::ostringstream why;
  if (nonfinite_ranks != 0 || !std::isfinite(loss)) {
    why << "non-finite loss";
    if (nonfinite_ranks > 0) why << " on " << nonfinite_ranks << (nonfinite_ranks == 1 ? " rank" : " ranks");
    return why.str();
  }
  if (norm && !std::isfinite(*norm)) return "non-finite gradient norm";
  if (args_.anomaly_zscore > 0) {
    if (const auto z = loss_window_.zscore(loss); z && *z > args_.anomaly_zscore) {
      why << "loss spike: " << loss << " is " << *z << " deviations above the last " << kWindow << " steps'";
      return why.str();
    }
    if (norm) {
      if (const auto z = norm_window_.zscore(*norm); z && *z > args_.anomaly_zscore) {
        why << "gradient-norm spike: " << *norm << " is " << *z << " deviations above the last " << kWindow << " steps'";
        return why.str();
      }
    }
  }
  return "";
}

AnomalyGuard::Action AnomalyGuard::record(const std::string& why, double loss, std::optional<double> norm) {
  if (why.empty()) {
    in_row_ = 0;
    if (args_.anomaly_zscore > 0) {
      loss_window_.add(loss);
      if (norm) norm_window_.add(*norm);
    }
    return Action::kApply;
  }
  ++in_row_;
  ++total_;
  if (in_row_ >= args_.anomaly_patience) {
    if (args_.on_anomaly == config::OnAnomaly::kRollback) return Action::kRollback;
    if (args_.on_anomaly == config::OnAnomaly::kStop) return Action::kStop;
  }
  return Action::kSkip;
}

}  // namespace hpctrain::train
