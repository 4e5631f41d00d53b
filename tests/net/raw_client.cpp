#include "raw_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace llorch::test {

namespace {
std::string lower(std::string s) {
  for (auto& c : s)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return s;
}
std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t");
  auto e = s.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}
} // namespace

std::string raw_response::header(const std::string& lower_name) const {
  for (const auto& [n, v] : headers)
    if (n == lower_name)
      return v;
  return {};
}

raw_client::raw_client(std::uint16_t port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd_ < 0)
    return;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd_);
    fd_ = -1;
    return;
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

raw_client::~raw_client() { close(); }

void raw_client::close() {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = -1;
}

void raw_client::set_receive_buffer(int bytes) {
  if (fd_ >= 0)
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
}

void raw_client::shutdown_write() {
  if (fd_ >= 0)
    ::shutdown(fd_, SHUT_WR);
}

bool raw_client::send(const std::string& bytes) {
  std::size_t off = 0;
  while (off < bytes.size()) {
    auto n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    off += static_cast<std::size_t>(n);
  }
  return true;
}

bool raw_client::fill(std::chrono::steady_clock::time_point deadline) {
  if (fd_ < 0 || eof_)
    return false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0)
      return false;
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return false;
    char tmp[8192];
    auto n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    buf_.append(tmp, static_cast<std::size_t>(n));
    return true;
  }
}

std::optional<std::string> raw_client::read_line(std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    auto pos = buf_.find("\r\n");
    if (pos != std::string::npos) {
      auto line = buf_.substr(0, pos);
      buf_.erase(0, pos + 2);
      return line;
    }
    if (!fill(deadline))
      return std::nullopt;
  }
}

std::optional<std::string> raw_client::read_exact(std::size_t n,
                                                  std::chrono::steady_clock::time_point deadline) {
  while (buf_.size() < n)
    if (!fill(deadline))
      return std::nullopt;
  auto out = buf_.substr(0, n);
  buf_.erase(0, n);
  return out;
}

std::optional<raw_response> raw_client::read_head(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto status_line = read_line(deadline);
    if (!status_line)
      return std::nullopt;
    raw_response r;
    if (status_line->rfind("HTTP/1.", 0) != 0 || status_line->size() < 12)
      return std::nullopt;
    r.status = std::atoi(status_line->c_str() + 9);
    for (;;) {
      auto line = read_line(deadline);
      if (!line)
        return std::nullopt;
      if (line->empty())
        break;
      auto colon = line->find(':');
      if (colon == std::string::npos)
        return std::nullopt;
      r.headers.emplace_back(lower(line->substr(0, colon)), trim(line->substr(colon + 1)));
    }
    if (r.status == 100)
      continue;  // interim response: the real one follows
    return r;
  }
}

std::optional<std::string> raw_client::read_chunk(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto size_line = read_line(deadline);
  if (!size_line)
    return std::nullopt;
  const auto size = std::strtoul(size_line->c_str(), nullptr, 16);
  auto data = read_exact(size, deadline);
  if (!data)
    return std::nullopt;
  auto crlf = read_line(deadline);
  if (!crlf || !crlf->empty())
    return std::nullopt;
  return data;
}

std::optional<raw_response> raw_client::read_response(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto r = read_head(timeout);
  if (!r)
    return std::nullopt;
  if (lower(r->header("transfer-encoding")) == "chunked") {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      auto c = read_chunk(left);
      if (!c)
        return std::nullopt;
      if (c->empty())
        break;
      r->body += *c;
    }
  } else if (!r->header("content-length").empty()) {
    auto b = read_exact(std::strtoul(r->header("content-length").c_str(), nullptr, 10), deadline);
    if (!b)
      return std::nullopt;
    r->body = *b;
  } else if (r->status != 204 && r->status != 304) {
    while (fill(deadline)) {
    }
    r->body = std::move(buf_);
    buf_.clear();
  }
  return r;
}

bool raw_client::wait_closed(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (fill(deadline)) {
  }
  return eof_;
}

std::string make_request(const std::string& method, const std::string& target,
                         const std::vector<std::string>& extra, const std::string& body,
                         bool keep_alive) {
  std::string r = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (const auto& h : extra)
    r += h + "\r\n";
  if (!body.empty() || method == "POST")
    r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  if (!keep_alive)
    r += "Connection: close\r\n";
  r += "\r\n" + body;
  return r;
}

std::string run_command(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (!p)
    return out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
    out.append(buf, n);
  ::pclose(p);
  return out;
}

} // namespace llorch::test
