// llorch-engine: the inference engine's command line (CONTRACT §5a): make-test-model, generate,
// bench. Each failure is one clear line on stderr and a non-zero exit.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "engines/batch_decoder.hpp"
#include "engines/bench.hpp"
#include "engines/kernels.hpp"
#include "engines/model.hpp"
#include "engines/orchestrator_link.hpp"
#include "engines/serve.hpp"
#include "engines/test_model.hpp"
#include "engines/tokenizer.hpp"
#include "engines/utf8.hpp"
#include "llorch_version.hpp"

namespace eng = llorch::engine;

namespace {

const char* usage =
    "usage: llorch-engine <command> [options]\n"
    "  make-test-model --shape tiny|s15m|s110m --format gguf|llama2c [--quant f32|f16|q8_0]\n"
    "                  --out PATH [--seed N]\n"
    "      deterministic random weights and a matching tokenizer (in the GGUF metadata, or\n"
    "      tokenizer.bin in the same directory as a llama2.c checkpoint)\n"
    "  generate --model PATH [--tokenizer PATH] --prompt TEXT --max-tokens N\n"
    "           [--temperature T --top-p P --top-k K --seed S] [--ignore-eos] [--print-ids]\n"
    "           [--threads N]\n"
    "      prints the text; with --print-ids one line of token ids (prompt, BOS first, then\n"
    "      the generated ones)\n"
    "  bench --model PATH [--tokenizer PATH] [--threads N] [--streams N] [--tokens N] [--rounds N]\n"
    "      decode throughput against the measured memory-bandwidth limit (best of N rounds)\n"
    "  serve --model PATH [--tokenizer PATH] [--model-id ID] --handoff-dir DIR --pool-id ID\n"
    "        [--replica-id ID] [--slots N] [--ctx N] [--threads N] [--device-mask MASK]\n"
    "        [--keepalive-ms N] [--orchestrator HOST:PORT\n"
    "        [--tls-certificate PEM --tls-key PEM --tls-ca PEM]]\n"
    "      the replica process: publishes the engine actor on 127.0.0.1 (port 0), writes\n"
    "      DIR/<pool-id>-<replica-id>.json when ready, removes it and exits 0 on SIGTERM;\n"
    "      sends a CAF heartbeat every N ms (default 1000) so its pool's link stays up;\n"
    "      with --orchestrator, links to orchestratord's cluster port so that tokens skip the node\n"
    "      (with mutual TLS when the three PEM files are given)\n"
    "  --help, --version\n";

int die(const std::string& msg) {
  std::fprintf(stderr, "llorch-engine: %s\n", msg.c_str());
  return 2;
}

struct args {
  std::map<std::string, std::string> values;
  std::vector<std::string> flags;
  std::string error;
  bool has(const std::string& k) const {
    return values.count(k) != 0 ||
           std::find(flags.begin(), flags.end(), k) != flags.end();
  }
  std::string get(const std::string& k, const std::string& fallback = {}) const {
    auto it = values.find(k);
    return it == values.end() ? fallback : it->second;
  }
};

args parse(int argc, char** argv, int first, const std::vector<std::string>& with_value,
           const std::vector<std::string>& switches) {
  args a;
  for (int i = first; i < argc; ++i) {
    const std::string k = argv[i];
    if (std::find(switches.begin(), switches.end(), k) != switches.end()) {
      a.flags.push_back(k);
    } else if (std::find(with_value.begin(), with_value.end(), k) != with_value.end()) {
      if (i + 1 >= argc) {
        a.error = k + " needs a value";
        return a;
      }
      a.values[k] = argv[++i];
    } else {
      a.error = "unknown option " + k + " (see --help)";
      return a;
    }
  }
  return a;
}

bool to_long(const std::string& s, long long lo, long long hi, long long& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || v < lo || v > hi) return false;
  out = v;
  return true;
}

bool to_float(const std::string& s, double lo, double hi, double& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (*end != '\0' || !(v >= lo && v <= hi)) return false;
  out = v;
  return true;
}

int default_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(std::min(n, 64u));
}

int cmd_make_test_model(int argc, char** argv) {
  auto a = parse(argc, argv, 2, {"--shape", "--format", "--quant", "--out", "--seed"}, {});
  if (!a.error.empty()) return die(a.error);
  for (const char* k : {"--shape", "--format", "--out"})
    if (!a.has(k)) return die(std::string(k) + " is required");
  eng::test_model_spec s;
  s.shape = a.get("--shape");
  s.format = a.get("--format");
  s.quant = a.get("--quant", "f32");
  s.out = a.get("--out");
  long long seed = 1;
  if (a.has("--seed") && !to_long(a.get("--seed"), 0, INT64_MAX, seed))
    return die("--seed must be a non-negative integer");
  s.seed = static_cast<std::uint64_t>(seed);
  if (auto st = eng::write_test_model(s); !st) return die(st.message());
  return 0;
}

struct common_opts {
  std::string model, tokenizer;
  int threads = 1;
};

int cmd_generate(int argc, char** argv) {
  auto a = parse(argc, argv, 2,
                 {"--model", "--tokenizer", "--prompt", "--max-tokens", "--temperature", "--top-p",
                  "--top-k", "--seed", "--threads"},
                 {"--ignore-eos", "--print-ids"});
  if (!a.error.empty()) return die(a.error);
  for (const char* k : {"--model", "--prompt", "--max-tokens"})
    if (!a.has(k)) return die(std::string(k) + " is required");
  long long max_tokens = 0, top_k = 0, seed = 0, threads = default_threads();
  double temperature = 0.0, top_p = 1.0;
  if (!to_long(a.get("--max-tokens"), 0, 1 << 20, max_tokens))
    return die("--max-tokens must be an integer from 0 to 1048576");
  if (a.has("--top-k") && !to_long(a.get("--top-k"), 0, 1 << 24, top_k))
    return die("--top-k must be a non-negative integer");
  if (a.has("--seed") && !to_long(a.get("--seed"), 0, INT64_MAX, seed))
    return die("--seed must be a non-negative integer");
  if (a.has("--threads") && !to_long(a.get("--threads"), 1, 256, threads))
    return die("--threads must be an integer from 1 to 256");
  if (a.has("--temperature") && !to_float(a.get("--temperature"), 0.0, 100.0, temperature))
    return die("--temperature must be a number from 0 to 100");
  if (a.has("--top-p") && !to_float(a.get("--top-p"), 0.0, 1.0, top_p))
    return die("--top-p must be a number from 0 to 1");

  auto m = eng::load_model(a.get("--model"), a.get("--tokenizer"));
  if (!m) return die(m.message());
  const eng::tokenizer tok((*m)->vocab);
  const std::string prompt = a.get("--prompt");
  const std::vector<int> ids = tok.encode(prompt, true);
  const int seq_len = (*m)->config.seq_len;
  if (static_cast<int>(ids.size()) > seq_len)
    return die("the prompt is " + std::to_string(ids.size()) + " tokens, more than the model's context of " +
               std::to_string(seq_len));

  eng::batch_decoder dec(*m, static_cast<int>(threads), 1, seq_len);
  eng::decode_request r;
  r.id = 1;
  r.prompt = ids;
  r.max_tokens = static_cast<int>(max_tokens);
  r.sampling.temperature = static_cast<float>(temperature);
  r.sampling.top_k = static_cast<int>(top_k);
  r.sampling.top_p = static_cast<float>(top_p);
  r.sampling.seed = static_cast<std::uint64_t>(seed);
  r.ignore_eos = a.has("--ignore-eos");
  if (auto st = dec.submit(r); !st) return die(st.message());

  const bool print_ids = a.has("--print-ids");
  std::vector<int> all = ids;
  eng::utf8_stream text;
  int prev = ids.back();
  while (dec.active() > 0) {
    for (const auto& e : dec.step()) {
      if (e.token < 0) continue;
      all.push_back(e.token);
      if (!print_ids && !(e.token == tok.eos() && !r.ignore_eos)) {
        std::cout << text.push(tok.decode(prev, e.token));
        std::cout.flush();
      }
      prev = e.token;
    }
  }
  if (print_ids) {
    for (std::size_t i = 0; i < all.size(); ++i) std::cout << (i ? " " : "") << all[i];
  } else {
    std::cout << text.finish();
  }
  std::cout << "\n";
  return 0;
}

int cmd_bench(int argc, char** argv) {
  auto a = parse(argc, argv, 2, {"--model", "--tokenizer", "--threads", "--streams", "--tokens", "--rounds"}, {});
  if (!a.error.empty()) return die(a.error);
  if (!a.has("--model")) return die("--model is required");
  long long threads = default_threads(), streams = 1, tokens = 128, rounds = 3;
  if (a.has("--rounds") && !to_long(a.get("--rounds"), 1, 100, rounds))
    return die("--rounds must be an integer from 1 to 100");
  if (a.has("--threads") && !to_long(a.get("--threads"), 1, 256, threads))
    return die("--threads must be an integer from 1 to 256");
  if (a.has("--streams") && !to_long(a.get("--streams"), 1, 256, streams))
    return die("--streams must be an integer from 1 to 256");
  if (a.has("--tokens") && !to_long(a.get("--tokens"), 1, 1 << 20, tokens))
    return die("--tokens must be an integer from 1 to 1048576");
  auto m = eng::load_model(a.get("--model"), a.get("--tokenizer"));
  if (!m) return die(m.message());
  const auto r = eng::run_bench(*m, static_cast<int>(threads), static_cast<int>(streams),
                                static_cast<int>(tokens), static_cast<int>(rounds));
  std::printf("model=%s format=%s weights=%s threads=%d streams=%d tokens=%d kernels=%s\n",
              a.get("--model").c_str(), (*m)->format.c_str(),
              eng::tensor_type_name((*m)->layers[0].wq.type), r.threads, r.streams, r.tokens,
              eng::kernel_path());
  std::printf("tok_per_s=%.1f read_gb_per_s=%.2f bytes_per_step=%.0f limit_tok_per_s=%.1f share=%.3f\n",
              r.tokens_per_s, r.read_gb_per_s, r.bytes_per_step, r.limit_tokens_per_s, r.share);
  return 0;
}

int cmd_serve(int argc, char** argv) {
  auto a = parse(argc, argv, 2,
                 {"--model", "--tokenizer", "--model-id", "--handoff-dir", "--pool-id", "--replica-id",
                  "--slots", "--ctx", "--threads", "--device-mask", "--keepalive-ms", "--orchestrator",
                  "--tls-certificate", "--tls-key", "--tls-ca"},
                 {});
  if (!a.error.empty()) return die(a.error);
  for (const char* k : {"--model", "--handoff-dir", "--pool-id"})
    if (!a.has(k)) return die(std::string(k) + " is required");
  eng::serve_options o;
  o.model_path = a.get("--model");
  o.tokenizer_path = a.get("--tokenizer");
  o.model_id = a.get("--model-id");
  o.handoff_dir = a.get("--handoff-dir");
  o.pool_id = a.get("--pool-id");
  o.replica_id = a.get("--replica-id", "0");
  o.device_mask = a.get("--device-mask", "cpu");
  long long slots = 4, ctx = 0, threads = default_threads();
  if (a.has("--slots") && !to_long(a.get("--slots"), 1, 1024, slots))
    return die("--slots must be an integer from 1 to 1024");
  if (a.has("--ctx") && !to_long(a.get("--ctx"), 1, 1 << 20, ctx))
    return die("--ctx must be an integer from 1 to 1048576");
  if (a.has("--threads") && !to_long(a.get("--threads"), 1, 256, threads))
    return die("--threads must be an integer from 1 to 256");
  long long keepalive = o.keepalive_ms;
  if (a.has("--keepalive-ms") && !to_long(a.get("--keepalive-ms"), 10, 600000, keepalive))
    return die("--keepalive-ms must be an integer from 10 to 600000");
  o.keepalive_ms = static_cast<int>(keepalive);
  o.orchestrator = a.get("--orchestrator");
  std::string host;
  std::uint16_t port = 0;
  if (a.has("--orchestrator") && !eng::split_host_port(o.orchestrator, host, port))
    return die("--orchestrator must be HOST:PORT or [IPV6]:PORT with a port from 1 to 65535");
  o.tls_certificate = a.get("--tls-certificate");
  o.tls_key = a.get("--tls-key");
  o.tls_ca = a.get("--tls-ca");
  const int tls_files = a.has("--tls-certificate") + a.has("--tls-key") + a.has("--tls-ca");
  if (tls_files != 0 && (tls_files != 3 || !a.has("--orchestrator")))
    return die("--tls-certificate, --tls-key and --tls-ca go together, with --orchestrator");
  for (const auto* f : {&o.tls_certificate, &o.tls_key, &o.tls_ca})
    if (!f->empty() && ::access(f->c_str(), R_OK) != 0)
      return die("cannot read " + *f + ": " + std::strerror(errno));
  // the handoff watcher accepts ids of 1 to 64 characters from [A-Za-z0-9._-]
  for (const std::string* id : {&o.pool_id, &o.replica_id}) {
    const bool ok = !id->empty() && id->size() <= 64 && (*id)[0] != '.' &&
                    std::all_of(id->begin(), id->end(), [](char c) {
                      return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
                    });
    if (!ok) return die("--pool-id and --replica-id must be 1 to 64 characters from [A-Za-z0-9._-]");
  }
  o.slots = static_cast<int>(slots);
  o.context = static_cast<int>(ctx);
  o.threads = static_cast<int>(threads);
  if (auto st = eng::run_serve(o); !st) {
    std::fprintf(stderr, "llorch-engine: %s\n", st.message().c_str());
    return 1;
  }
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(usage, stderr);
    return 2;
  }
  const std::string cmd = argv[1];
  bool help = cmd == "help";
  for (int i = 1; i < argc; ++i) help = help || std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0;
  if (help) {
    std::fputs(usage, stdout);
    return 0;
  }
  if (cmd == "--version") {
    std::printf("llorch-engine %s\n", llorch::version);
    return 0;
  }
  if (cmd == "make-test-model") return cmd_make_test_model(argc, argv);
  if (cmd == "generate") return cmd_generate(argc, argv);
  if (cmd == "bench") return cmd_bench(argc, argv);
  if (cmd == "serve") return cmd_serve(argc, argv);
  return die("unknown command \"" + cmd + "\" (see --help)");
}
