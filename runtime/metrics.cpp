#include "runtime/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace llorch::metrics {

static_assert(std::atomic<double>::is_always_lock_free, "metric updates must be lock-free");
static_assert(std::atomic<uint64_t>::is_always_lock_free, "metric updates must be lock-free");

namespace {

// fetch_add for atomic<double> is C++20; a relaxed CAS loop is the C++17 equivalent.
void atomic_add(std::atomic<double>& target, double v) {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, current + v, std::memory_order_relaxed)) {
  }
}

bool is_metric_name(const std::string& name) {
  if (name.empty())
    return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!letter && !(i > 0 && c >= '0' && c <= '9'))
      return false;
  }
  return true;
}

bool is_label_name(const std::string& name) {
  if (name.empty() || name.rfind("__", 0) == 0)
    return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!letter && !(i > 0 && c >= '0' && c <= '9'))
      return false;
  }
  return true;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size()
         && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Length of the valid UTF-8 sequence at s[i], or 0 if the bytes there are not one.
std::size_t utf8_sequence(const std::string& s, std::size_t i) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  if (c < 0x80)
    return 1;
  std::size_t n = 0;
  unsigned min = 0;
  unsigned cp = 0;
  if ((c & 0xe0) == 0xc0) {
    n = 2;
    cp = c & 0x1f;
    min = 0x80;
  } else if ((c & 0xf0) == 0xe0) {
    n = 3;
    cp = c & 0x0f;
    min = 0x800;
  } else if ((c & 0xf8) == 0xf0) {
    n = 4;
    cp = c & 0x07;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > s.size())
    return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

// Escapes \ and newline (and " when `quote` is set); invalid UTF-8 becomes U+FFFD so that every
// exposition parses.
void append_escaped(std::string& out, const std::string& v, bool quote) {
  for (std::size_t i = 0; i < v.size();) {
    char c = v[i];
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else {
      std::size_t n = utf8_sequence(v, i);
      if (n == 0) {
        out += "\xef\xbf\xbd";
        ++i;
        continue;
      }
      out.append(v, i, n);
      i += n;
      continue;
    }
    ++i;
  }
}

void append_labels(std::string& out, const std::vector<std::string>& names,
                   const std::vector<std::string>& values, const char* extra_name = nullptr,
                   const std::string& extra_value = {}) {
  if (names.empty() && !extra_name)
    return;
  out += '{';
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i)
      out += ',';
    out += names[i];
    out += "=\"";
    append_escaped(out, values[i], true);
    out += '"';
  }
  if (extra_name) {
    if (!names.empty())
      out += ',';
    out += extra_name;
    out += "=\"";
    out += extra_value;
    out += '"';
  }
  out += '}';
}

void append_header(std::string& out, const detail::family_base& f, const char* type) {
  out += "# HELP ";
  out += f.name();
  out += ' ';
  append_escaped(out, f.help(), false);
  out += "\n# TYPE ";
  out += f.name();
  out += ' ';
  out += type;
  out += '\n';
}

void append_sample(std::string& out, const std::string& name, const char* suffix,
                   const std::vector<std::string>& names, const std::vector<std::string>& values,
                   const std::string& value, const char* extra_name = nullptr,
                   const std::string& extra_value = {}) {
  out += name;
  out += suffix;
  append_labels(out, names, values, extra_name, extra_value);
  out += ' ';
  out += value;
  out += '\n';
}

std::vector<double> checked_bounds(std::vector<double> bounds) {
  if (!bounds.empty() && std::isinf(bounds.back()) && bounds.back() > 0)
    bounds.pop_back();
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]))
      throw std::invalid_argument("histogram bucket bounds must be finite (+Inf is implied)");
    if (i > 0 && !(bounds[i] > bounds[i - 1]))
      throw std::invalid_argument("histogram bucket bounds must be strictly increasing");
  }
  return bounds;
}

template <class M>
std::unique_ptr<M> make_child(const std::vector<double>&) {
  return std::make_unique<M>();
}

template <>
std::unique_ptr<histogram> make_child<histogram>(const std::vector<double>& buckets) {
  return std::make_unique<histogram>(buckets);
}

const char* type_name(detail::metric_kind kind) {
  switch (kind) {
    case detail::metric_kind::counter: return "counter";
    case detail::metric_kind::gauge: return "gauge";
    case detail::metric_kind::histogram: return "histogram";
  }
  return "untyped";
}

template <class M>
constexpr detail::metric_kind kind_of();
template <>
constexpr detail::metric_kind kind_of<counter>() {
  return detail::metric_kind::counter;
}
template <>
constexpr detail::metric_kind kind_of<gauge>() {
  return detail::metric_kind::gauge;
}
template <>
constexpr detail::metric_kind kind_of<histogram>() {
  return detail::metric_kind::histogram;
}

void append_child(std::string& out, const detail::family_base& f,
                  const std::vector<std::string>& values, const counter& c) {
  append_sample(out, f.name(), "", f.label_names(), values, format_value(c.value()));
}

void append_child(std::string& out, const detail::family_base& f,
                  const std::vector<std::string>& values, const gauge& g) {
  append_sample(out, f.name(), "", f.label_names(), values, format_value(g.value()));
}

void append_child(std::string& out, const detail::family_base& f,
                  const std::vector<std::string>& values, const histogram& h) {
  auto snap = h.collect();
  const auto& bounds = h.upper_bounds();
  for (std::size_t i = 0; i < bounds.size(); ++i)
    append_sample(out, f.name(), "_bucket", f.label_names(), values,
                  std::to_string(snap.cumulative[i]), "le", format_value(bounds[i]));
  append_sample(out, f.name(), "_bucket", f.label_names(), values, std::to_string(snap.count), "le",
                "+Inf");
  append_sample(out, f.name(), "_sum", f.label_names(), values, format_value(snap.sum));
  append_sample(out, f.name(), "_count", f.label_names(), values, std::to_string(snap.count));
}

} // namespace

std::string format_value(double v) {
  if (std::isnan(v))
    return "NaN";
  if (std::isinf(v))
    return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  if (ec != std::errc{})
    return "NaN"; // unreachable: 64 bytes hold any shortest double
  return std::string(buf, end);
}

std::string escape_label_value(const std::string& v) {
  std::string out;
  append_escaped(out, v, true);
  return out;
}

// ---------------------------------------------------------------------------------------------

void counter::inc(double v) {
  if (!(v >= 0))
    throw std::invalid_argument("a counter can only go up: inc(" + format_value(v) + ")");
  atomic_add(value_, v);
}

void gauge::inc(double v) {
  atomic_add(value_, v);
}

histogram::histogram(std::vector<double> upper_bounds)
  : bounds_(checked_bounds(std::move(upper_bounds))),
    counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (std::size_t i = 0; i <= bounds_.size(); ++i)
    counts_[i].store(0, std::memory_order_relaxed);
}

void histogram::observe(double v) {
  // le is inclusive: the first bound >= v; NaN and values above every bound land in +Inf.
  std::size_t i = std::isnan(v)
                    ? bounds_.size()
                    : static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v)
                                               - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  atomic_add(sum_, v);
}

histogram::snapshot histogram::collect() const {
  snapshot s;
  s.cumulative.resize(bounds_.size() + 1);
  uint64_t running = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> exponential_buckets(double start, double factor, std::size_t count) {
  if (!(start > 0) || !(factor > 1) || count == 0)
    throw std::invalid_argument("exponential_buckets needs start > 0, factor > 1, count > 0");
  std::vector<double> out;
  double v = start;
  for (std::size_t i = 0; i < count; ++i, v *= factor)
    out.push_back(v);
  return out;
}

std::vector<double> linear_buckets(double start, double width, std::size_t count) {
  if (!(width > 0) || count == 0)
    throw std::invalid_argument("linear_buckets needs width > 0, count > 0");
  std::vector<double> out;
  for (std::size_t i = 0; i < count; ++i)
    out.push_back(start + width * static_cast<double>(i));
  return out;
}

// ---------------------------------------------------------------------------------------------

namespace detail {

family_base::family_base(metric_kind kind, std::string name, std::string help,
                         std::vector<std::string> label_names, std::vector<double> buckets)
  : kind_(kind), name_(std::move(name)), help_(std::move(help)),
    label_names_(std::move(label_names)), buckets_(std::move(buckets)) {
  if (!is_metric_name(name_))
    throw std::invalid_argument("invalid metric name \"" + name_
                                + "\" (want [a-zA-Z_:][a-zA-Z0-9_:]*)");
  if (help_.empty())
    throw std::invalid_argument("metric " + name_ + " needs a help text");
  if (kind_ == metric_kind::counter && !ends_with(name_, "_total"))
    throw std::invalid_argument("counter " + name_ + " must be named *_total");
  for (std::size_t i = 0; i < label_names_.size(); ++i) {
    const auto& label = label_names_[i];
    if (!is_label_name(label))
      throw std::invalid_argument("metric " + name_ + ": invalid label name \"" + label + "\"");
    if (kind_ == metric_kind::histogram && label == "le")
      throw std::invalid_argument("histogram " + name_ + ": the label name \"le\" is reserved");
    if (std::find(label_names_.begin(), label_names_.begin() + static_cast<std::ptrdiff_t>(i),
                  label)
        != label_names_.begin() + static_cast<std::ptrdiff_t>(i))
      throw std::invalid_argument("metric " + name_ + ": label \"" + label + "\" given twice");
  }
  if (kind_ == metric_kind::histogram)
    buckets_ = checked_bounds(std::move(buckets_));
}

family_base::~family_base() = default;

void family_base::check_label_count(const std::vector<std::string>& label_values) const {
  if (label_values.size() != label_names_.size())
    throw std::invalid_argument("metric " + name_ + " takes " + std::to_string(label_names_.size())
                                + " label values, got " + std::to_string(label_values.size()));
}

} // namespace detail

template <class M>
family<M>::family(std::string name, std::string help, std::vector<std::string> label_names,
                  std::vector<double> buckets)
  : family_base(kind_of<M>(), std::move(name), std::move(help), std::move(label_names),
                std::move(buckets)) {
  if (label_names_.empty())
    children_.emplace(std::vector<std::string>{}, make_child<M>(buckets_));
}

template <class M>
M& family<M>::with(const std::vector<std::string>& label_values) {
  check_label_count(label_values);
  std::lock_guard<std::mutex> guard(mutex_);
  auto it = children_.find(label_values);
  if (it == children_.end())
    it = children_.emplace(label_values, make_child<M>(buckets_)).first;
  return *it->second;
}

template <class M>
void family<M>::remove(const std::vector<std::string>& label_values) {
  check_label_count(label_values);
  std::lock_guard<std::mutex> guard(mutex_);
  children_.erase(label_values);
}

template <class M>
void family<M>::clear() {
  std::lock_guard<std::mutex> guard(mutex_);
  children_.clear();
}

template <class M>
std::size_t family<M>::size() const {
  std::lock_guard<std::mutex> guard(mutex_);
  return children_.size();
}

template <class M>
void family<M>::expose(std::string& out) const {
  append_header(out, *this, type_name(kind_));
  std::lock_guard<std::mutex> guard(mutex_);
  for (const auto& [values, child] : children_)
    append_child(out, *this, values, *child);
}

template class family<counter>;
template class family<gauge>;
template class family<histogram>;

// ---------------------------------------------------------------------------------------------

registry::registry() = default;
registry::~registry() = default;

detail::family_base& registry::add(std::unique_ptr<detail::family_base> candidate) {
  std::lock_guard<std::mutex> guard(mutex_);
  const auto& name = candidate->name();
  if (auto it = families_.find(name); it != families_.end()) {
    const auto& existing = *it->second;
    if (existing.kind() != candidate->kind() || existing.label_names() != candidate->label_names()
        || existing.buckets() != candidate->buckets())
      throw std::invalid_argument("metric " + name + " is already registered differently");
    return *it->second;
  }
  // A histogram's series names must not collide with another family's.
  auto clashes = [&](const std::string& series) { return families_.count(series) > 0; };
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    if (candidate->kind() == detail::metric_kind::histogram && clashes(name + suffix))
      throw std::invalid_argument("histogram " + name + " clashes with metric " + name + suffix);
    if (ends_with(name, suffix)) {
      auto base = name.substr(0, name.size() - std::char_traits<char>::length(suffix));
      auto it = families_.find(base);
      if (it != families_.end() && it->second->kind() == detail::metric_kind::histogram)
        throw std::invalid_argument("metric " + name + " clashes with histogram " + base);
    }
  }
  auto& slot = families_[name];
  slot = std::move(candidate);
  return *slot;
}

detail::family_base* registry::registered(const std::string& name, detail::metric_kind kind,
                                          const std::vector<std::string>& label_names,
                                          const std::vector<double>& buckets) const {
  std::lock_guard<std::mutex> guard(mutex_);
  auto it = families_.find(name);
  if (it == families_.end() || it->second->kind() != kind || it->second->label_names() != label_names
      || it->second->buckets() != buckets)
    return nullptr;
  return it->second.get();
}

family<counter>& registry::counter_family(std::string name, std::string help,
                                          std::vector<std::string> label_names) {
  if (auto* f = registered(name, detail::metric_kind::counter, label_names, {}))
    return static_cast<family<counter>&>(*f);
  return static_cast<family<counter>&>(add(
    std::make_unique<family<counter>>(std::move(name), std::move(help), std::move(label_names))));
}

family<gauge>& registry::gauge_family(std::string name, std::string help,
                                      std::vector<std::string> label_names) {
  if (auto* f = registered(name, detail::metric_kind::gauge, label_names, {}))
    return static_cast<family<gauge>&>(*f);
  return static_cast<family<gauge>&>(
    add(std::make_unique<family<gauge>>(std::move(name), std::move(help), std::move(label_names))));
}

family<histogram>& registry::histogram_family(std::string name, std::string help,
                                              std::vector<std::string> label_names,
                                              std::vector<double> buckets) {
  if (auto* f = registered(name, detail::metric_kind::histogram, label_names, buckets))
    return static_cast<family<histogram>&>(*f);
  return static_cast<family<histogram>&>(add(std::make_unique<family<histogram>>(
    std::move(name), std::move(help), std::move(label_names), std::move(buckets))));
}

std::string registry::expose() const {
  std::string out;
  std::lock_guard<std::mutex> guard(mutex_);
  for (const auto& entry : families_)
    entry.second->expose(out);
  return out;
}

} // namespace llorch::metrics
