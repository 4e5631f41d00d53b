#pragma once
// A deliberately small HTTP/1.1 client over POSIX sockets for the server tests: it sends exactly
// the bytes a test gives it (hostile input included) and parses what comes back itself, so the
// tests do not trust the server's own library to read its answers.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace llorch::test {

struct raw_response {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-case
  std::string body;                                          // de-chunked
  std::string header(const std::string& lower_name) const;
};

class raw_client {
 public:
  explicit raw_client(std::uint16_t port);
  ~raw_client();
  raw_client(const raw_client&) = delete;
  raw_client& operator=(const raw_client&) = delete;

  bool connected() const { return fd_ >= 0; }
  bool send(const std::string& bytes);
  void close();
  void shutdown_write();
  // A small receive buffer makes a server that writes faster than this client reads queue sooner.
  void set_receive_buffer(int bytes);

  // One response (Content-Length, chunked, or until close); nullopt on timeout or a closed
  // connection before a full response.
  std::optional<raw_response> read_response(std::chrono::milliseconds timeout = std::chrono::seconds(5));

  // For streams: the head only, then chunks one at a time ("" for the last chunk).
  std::optional<raw_response> read_head(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  std::optional<std::string> read_chunk(std::chrono::milliseconds timeout = std::chrono::seconds(5));

  // True when the server closed the connection (EOF or reset) within the timeout.
  bool wait_closed(std::chrono::milliseconds timeout = std::chrono::seconds(5));

 private:
  bool fill(std::chrono::steady_clock::time_point deadline);  // read more into buf_
  std::optional<std::string> read_line(std::chrono::steady_clock::time_point deadline);
  std::optional<std::string> read_exact(std::size_t n, std::chrono::steady_clock::time_point deadline);

  int fd_ = -1;
  std::string buf_;
  bool eof_ = false;
};

// A request in wire form: `extra` are complete header lines without CRLF.
std::string make_request(const std::string& method, const std::string& target,
                         const std::vector<std::string>& extra = {}, const std::string& body = {},
                         bool keep_alive = true);

// Runs a shell command and returns its stdout (for curl).
std::string run_command(const std::string& command);

} // namespace llorch::test
