// The numerical-anomaly guard's verdicts and its spike windows.
#include "anomaly_guard.h"

#include <cmath>
#include <sstream>

#include "hpctrain/core/error.h"

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

Json AnomalyGuard::state() const {
  const auto window = [](const Window& w) {
    Json j = Json::object();
    j["values"] = Json(std::vector<double>(w.values.begin(), w.values.end()));
    j["sum"] = w.sum;
    j["sum_sq"] = w.sum_sq;
    return j;
  };
  Json s = Json::object();
  s["in_row"] = in_row_;
  s["total"] = total_;
  s["loss_window"] = window(loss_window_);
  s["norm_window"] = window(norm_window_);
  return s;
}

void AnomalyGuard::load_state(const Json& s) {
  const auto bad = [&](const std::string& what) {
    throw ConfigError("anomaly guard state in the checkpoint: " + what + ": " + json::dump(s));
  };
  const auto count = [&](const char* key) {
    const Json* v = json::find(s, key);
    if (!v || !json::is_int64(*v) || v->get<std::int64_t>() < 0) bad(std::string("no count '") + key + "'");
    return v->get<std::int64_t>();
  };
  const auto window = [&](const char* key) {
    const Json* w = json::find(s, key);
    const Json* values = w ? json::find(*w, "values") : nullptr;
    const Json* sum = w ? json::find(*w, "sum") : nullptr;
    const Json* sum_sq = w ? json::find(*w, "sum_sq") : nullptr;
    if (!values || !values->is_array() || values->size() > kWindow || !sum || !sum->is_number() || !sum_sq ||
        !sum_sq->is_number())
      bad(std::string("no window '") + key + "' of at most 128 values with its sums");
    Window out;
    for (const auto& v : *values) {
      if (!v.is_number()) bad(std::string("a value of '") + key + "' that is no number");
      out.values.push_back(json::number(v));
    }
    out.sum = json::number(*sum);
    out.sum_sq = json::number(*sum_sq);
    return out;
  };
  const std::int64_t in_row = count("in_row"), total = count("total");
  Window loss = window("loss_window"), norm = window("norm_window");
  in_row_ = in_row;
  total_ = total;
  loss_window_ = std::move(loss);
  norm_window_ = std::move(norm);
}

}  // namespace hpctrain::train
