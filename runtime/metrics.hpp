#pragma once
// Metrics registry with the Prometheus text exposition format 0.0.4 (CONTRACT §6).
// Updates are lock-free atomics, so any actor or thread may update a metric it holds a reference
// to. Looking a child up by label values takes the family's mutex: look it up once, keep the
// reference. References stay valid until the child is removed (remove(), clear()) or the registry
// is destroyed. Misuse (bad names, wrong label count, a counter going down) is a programming
// error and throws std::invalid_argument.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace llorch::metrics {

class counter {
public:
  void inc(double v = 1); // v must be >= 0
  double value() const { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<double> value_{0};
};

class gauge {
public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void inc(double v = 1);
  void dec(double v = 1) { inc(-v); }
  double value() const { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<double> value_{0};
};

class histogram {
public:
  // Upper bounds, strictly increasing and finite (a trailing +Inf is implied and may be given).
  explicit histogram(std::vector<double> upper_bounds);

  void observe(double v);

  // A consistent-enough copy for exposition: `cumulative` has one entry per bound plus +Inf,
  // and `count` equals the +Inf bucket. `sum` is read separately and may lag by the
  // observations in flight.
  struct snapshot {
    std::vector<uint64_t> cumulative;
    double sum = 0;
    uint64_t count = 0;
  };
  snapshot collect() const;
  const std::vector<double>& upper_bounds() const { return bounds_; }

private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_; // per bucket, not cumulative; last is +Inf
  std::atomic<double> sum_{0};
};

// Useful bucket layouts, in the unit of the metric.
std::vector<double> exponential_buckets(double start, double factor, std::size_t count);
std::vector<double> linear_buckets(double start, double width, std::size_t count);

namespace detail {

enum class metric_kind { counter, gauge, histogram };

class family_base {
public:
  family_base(metric_kind kind, std::string name, std::string help,
              std::vector<std::string> label_names, std::vector<double> buckets);
  virtual ~family_base();
  family_base(const family_base&) = delete;
  family_base& operator=(const family_base&) = delete;

  metric_kind kind() const { return kind_; }
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  const std::vector<double>& buckets() const { return buckets_; }

  // Appends HELP, TYPE and every child's samples.
  virtual void expose(std::string& out) const = 0;

protected:
  void check_label_count(const std::vector<std::string>& label_values) const;

  metric_kind kind_;
  std::string name_, help_;
  std::vector<std::string> label_names_;
  std::vector<double> buckets_; // histograms only
};

} // namespace detail

template <class M>
class family final : public detail::family_base {
public:
  family(std::string name, std::string help, std::vector<std::string> label_names,
         std::vector<double> buckets = {});

  // The child for these label values (one per label name, in order), created at 0 if new.
  M& with(const std::vector<std::string>& label_values);
  // Removing a child invalidates references to it; removing an absent child does nothing.
  void remove(const std::vector<std::string>& label_values);
  void clear();
  std::size_t size() const;

  void expose(std::string& out) const override;

private:
  mutable std::mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<M>> children_;
};

extern template class family<counter>;
extern template class family<gauge>;
extern template class family<histogram>;

class registry {
public:
  registry();
  ~registry();
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  // Registering a name again with the same type, labels (and buckets) returns the same family;
  // anything else with that name throws. Counter names must end in "_total" and every family
  // needs a help text (promtool requires both). A family without labels exposes its single
  // child, at 0, at once.
  family<counter>& counter_family(std::string name, std::string help,
                                  std::vector<std::string> label_names = {});
  family<gauge>& gauge_family(std::string name, std::string help,
                              std::vector<std::string> label_names = {});
  family<histogram>& histogram_family(std::string name, std::string help,
                                      std::vector<std::string> label_names,
                                      std::vector<double> buckets);

  // Text exposition format 0.0.4; families sorted by name, children by label values.
  std::string expose() const;

  // The Content-Type header value for expose()'s output.
  static const char* content_type() { return "text/plain; version=0.0.4; charset=utf-8"; }

private:
  // The family registered under name exactly so, or null (then add() decides): hot paths look
  // their family up per event, and building a candidate each time cost allocations and checks.
  detail::family_base* registered(const std::string& name, detail::metric_kind kind,
                                  const std::vector<std::string>& label_names,
                                  const std::vector<double>& buckets) const;
  detail::family_base& add(std::unique_ptr<detail::family_base> candidate);

  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<detail::family_base>> families_;
};

// Exposed for tests: how a sample value and a label value are written.
std::string format_value(double v);
std::string escape_label_value(const std::string& v);

} // namespace llorch::metrics
