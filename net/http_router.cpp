#include "net/http_router.hpp"

#include <algorithm>

namespace llorch::net {

namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i <= path.size()) {
    auto j = path.find('/', i);
    if (j == std::string_view::npos)
      j = path.size();
    if (j > i)
      out.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "%41" -> "A"; an invalid escape is kept as it is.
std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
        hex_value(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

} // namespace

void http_router::add(std::string method, std::string pattern, route_access access,
                      http_handler h) {
  route r{std::move(method), {}, access, std::move(h)};
  for (auto part : split_path(pattern)) {
    if (part.size() >= 2 && part.front() == '{' && part.back() == '}')
      r.segments.push_back({std::string(part.substr(1, part.size() - 2)), true});
    else
      r.segments.push_back({std::string(part), false});
  }
  for (auto& existing : routes_) {
    const bool same = existing.method == r.method &&
                      existing.segments.size() == r.segments.size() &&
                      std::equal(existing.segments.begin(), existing.segments.end(),
                                 r.segments.begin(), [](const segment& a, const segment& b) {
                                   return a.param == b.param && (a.param || a.text == b.text);
                                 });
    if (same) {
      existing = std::move(r);
      return;
    }
  }
  routes_.push_back(std::move(r));
}

route_match http_router::match(std::string_view method, std::string_view path) const {
  const auto parts = split_path(path);
  const route* best = nullptr;
  std::vector<std::string> allowed;

  // True when a is more specific than b: a literal where b has a parameter, first difference.
  auto more_specific = [](const route& a, const route& b) {
    for (std::size_t i = 0; i < a.segments.size(); ++i)
      if (a.segments[i].param != b.segments[i].param)
        return !a.segments[i].param;
    return false;
  };

  for (const auto& r : routes_) {
    if (r.segments.size() != parts.size())
      continue;
    bool fits = true;
    for (std::size_t i = 0; i < parts.size() && fits; ++i)
      fits = r.segments[i].param || r.segments[i].text == parts[i];
    if (!fits)
      continue;
    if (r.method == method) {
      if (!best || more_specific(r, *best))
        best = &r;
    } else if (std::find(allowed.begin(), allowed.end(), r.method) == allowed.end()) {
      allowed.push_back(r.method);
    }
  }

  route_match m;
  if (best) {
    m.result = route_match::outcome::found;
    m.handler = &best->handler;
    m.access = best->access;
    for (std::size_t i = 0; i < parts.size(); ++i)
      if (best->segments[i].param)
        m.params[best->segments[i].text] = percent_decode(parts[i]);
    return m;
  }
  if (allowed.empty())
    return m;
  m.result = route_match::outcome::method_not_allowed;
  for (const auto& a : allowed)
    m.allow += (m.allow.empty() ? "" : ", ") + a;
  return m;
}

} // namespace llorch::net
