// toc_bench: how long a lazy eStargz layer takes to become mountable once its blob is
// at hand: LoadToc (footer, TOC decompression, digest check, ParseTocJson) and the
// StargzTree constructor, for generated layers of about 1k, 10k and 50k entries.
//
//   toc_bench [--entries N,...] [--runs R] [--blob PATH]
//       For each N, builds an eStargz blob of N entries shaped like a distribution
//       image (directories of a dozen small files and a symlink, some multi-chunk
//       files), then times:
//         first: LoadToc as the first thing a fresh process does after reading the
//                blob (this program run again with --first-call; the median of 5);
//         warm:  the median of R LoadToc calls in this process;
//         parse: the median of R ParseTocJson calls, the part of LoadToc after the
//                TOC is decompressed and its digest checked;
//         tree:  the median of R StargzTree constructions from a loaded Toc.
//       --blob PATH adds a row for an existing eStargz blob (its TOC is not verified).
//
// Prints one row per layer: inodes, TOC JSON size, and the four times in ms. Times are
// CPU time (user and system) of the calling thread, which is all these steps use, so
// that other load on the machine counts as little as it can. A fresh process's first
// call pays for the page faults of a heap that has not grown yet.
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_stats.h"
#include "lazy/stargz/footer.h"
#include "lazy/stargz/toc.h"
#include "lazy/stargz/tree.h"
#include "tests/lazy/stargz_builder.h"
#include "tests/lazy/stargz_test_support.h"

namespace {

namespace stargz = strata::lazy::stargz;
using strata::bench::Median;

constexpr int kFirstRuns = 5;

struct Layer {
  std::string label;
  std::string path;  // the blob, for --first-call
  std::shared_ptr<stargz::testing::StringBlobReader> blob;
  std::string toc_digest;  // empty: load unverified
};

// Exits on failure: a benchmark of a broken load means nothing.
template <typename T>
T ValueOrExit(strata::Result<T> result, const char* what) {
  if (!result.ok()) {
    std::fprintf(stderr, "toc_bench: %s: %s\n", what, result.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(result).value();
}

std::string ReadFileOrExit(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream data;
  data << in.rdbuf();
  if (!in) {
    std::fprintf(stderr, "toc_bench: cannot read %s\n", path.c_str());
    std::exit(1);
  }
  return std::move(data).str();
}

// About `entries` entries: directories of 12 files of 40 to 2,000 bytes (every 40th
// file 3 chunks long) and a symlink, 50 such directories to a package directory.
stargz::testing::BuiltLayer BuildGeneratedLayer(size_t entries) {
  namespace t = stargz::testing;
  std::vector<t::LayerEntry> layer = {t::Dir("./"), t::Dir("./usr/"), t::Dir("./usr/share/")};
  size_t files = 0;
  for (size_t dir = 0; layer.size() < entries; dir++) {
    const std::string package = "./usr/share/pkg-" + std::to_string(dir / 50) + "/";
    if (dir % 50 == 0) layer.push_back(t::Dir(package));
    const std::string dir_name = package + "lib-" + std::to_string(dir) + "/";
    layer.push_back(t::Dir(dir_name));
    for (int i = 0; i < 12 && layer.size() < entries; i++, files++) {
      const size_t size = files % 40 == 0 ? 3 * 1024 : 40 + (files * 7919) % 1960;
      std::string data(size, static_cast<char>('a' + files % 26));
      layer.push_back(t::File(dir_name + "module_" + std::to_string(i) + ".py", std::move(data)));
    }
    if (layer.size() < entries) layer.push_back(t::Symlink(dir_name + "current", "module_0.py"));
  }
  t::BuildOptions options;
  options.chunk_size = 1024;  // so that the 3 KiB files have 3 chunks
  options.no_prefetch_landmark = true;
  return t::BuildLayer(layer, options);
}

// CPU time of the calling thread, in ms.
double ThreadCpuMs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

stargz::LoadTocOptions LoadOptions(const std::string& toc_digest) {
  stargz::LoadTocOptions options;
  options.toc_digest = toc_digest;
  options.allow_unverified = toc_digest.empty();
  return options;
}

double TimeLoadToc(stargz::testing::StringBlobReader& blob, const std::string& toc_digest,
                   stargz::Toc* out = nullptr) {
  const stargz::LoadTocOptions options = LoadOptions(toc_digest);
  const double start = ThreadCpuMs();
  strata::Result<stargz::Toc> toc = stargz::LoadToc(blob, options);
  const double ms = ThreadCpuMs() - start;
  stargz::Toc loaded = ValueOrExit(std::move(toc), "LoadToc");
  if (out != nullptr) *out = std::move(loaded);
  return ms;
}

// LoadToc's time in a new process of this program (--first-call).
double TimeFirstLoadToc(const Layer& layer) {
  int fds[2];
  if (pipe(fds) != 0) std::exit(1);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    std::vector<std::string> args = {"toc_bench", "--first-call", layer.path};
    if (!layer.toc_digest.empty()) args.insert(args.end(), {"--toc-digest", layer.toc_digest});
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  close(fds[1]);
  std::string output;
  char buf[64];
  ssize_t got;
  while ((got = read(fds[0], buf, sizeof buf)) > 0) output.append(buf, static_cast<size_t>(got));
  close(fds[0]);
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0 || output.empty()) {
    std::fprintf(stderr, "toc_bench: --first-call %s failed\n", layer.path.c_str());
    std::exit(1);
  }
  return std::stod(output);
}

void Measure(const Layer& layer, int runs) {
  std::vector<double> first_ms;
  for (int i = 0; i < kFirstRuns; i++) first_ms.push_back(TimeFirstLoadToc(layer));

  std::vector<double> warm_ms;
  stargz::Toc toc;
  for (int i = 0; i < runs; i++)
    warm_ms.push_back(TimeLoadToc(*layer.blob, layer.toc_digest, &toc));

  const stargz::LoadTocOptions options = LoadOptions(layer.toc_digest);
  stargz::FooterAndToc read =
      ValueOrExit(stargz::ReadFooterAndToc(*layer.blob), "ReadFooterAndToc");
  const std::string json = ValueOrExit(
      stargz::DecompressToc(read.footer, read.compressed_toc, options.limits.max_json_bytes),
      "DecompressToc");
  std::vector<double> parse_ms;
  for (int i = 0; i < runs; i++) {
    const double start = ThreadCpuMs();
    strata::Result<stargz::Toc> parsed =
        stargz::ParseTocJson(json, read.footer.format, read.footer.payload_end, options.limits);
    parse_ms.push_back(ThreadCpuMs() - start);
    ValueOrExit(std::move(parsed), "ParseTocJson");
  }

  std::vector<double> tree_ms;
  for (int i = 0; i < runs; i++) {
    stargz::Toc copy = toc;
    const double start = ThreadCpuMs();
    stargz::StargzTree tree(layer.blob, std::move(copy));
    tree_ms.push_back(ThreadCpuMs() - start);
  }

  std::printf("%-10s %8zu %9.2f %10.1f %9.1f %9.1f %9.1f\n", layer.label.c_str(), toc.inodes.size(),
              static_cast<double>(json.size()) / (1 << 20), Median(first_ms), Median(warm_ms),
              Median(parse_ms), Median(tree_ms));
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Times LoadToc, ParseTocJson and the StargzTree constructor on eStargz layers"};
  std::vector<size_t> entries = {1000, 10000, 50000};
  int runs = 15;
  std::string blob_path;
  std::string first_call_path;
  std::string toc_digest;
  app.add_option("--entries", entries, "Entries of each generated layer")->delimiter(',');
  app.add_option("--runs", runs, "Warm runs per layer (median reported)")
      ->check(CLI::PositiveNumber);
  app.add_option("--blob", blob_path, "An eStargz blob to time as well");
  app.add_option("--first-call", first_call_path,
                 "Internal: print the time of one LoadToc of this blob and exit");
  app.add_option("--toc-digest", toc_digest, "Internal: the TOC digest for --first-call");
  CLI11_PARSE(app, argc, argv);

  if (!first_call_path.empty()) {
    stargz::testing::StringBlobReader blob(ReadFileOrExit(first_call_path));
    std::printf("%.3f\n", TimeLoadToc(blob, toc_digest));
    return 0;
  }

  char dir_template[] = "/tmp/toc_bench.XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    std::perror("toc_bench: mkdtemp");
    return 1;
  }
  const std::filesystem::path dir = dir_template;
  std::printf("%-10s %8s %9s %10s %9s %9s %9s\n", "layer", "inodes", "TOC MiB", "first ms",
              "warm ms", "parse ms", "tree ms");
  for (size_t n : entries) {
    stargz::testing::BuiltLayer built = BuildGeneratedLayer(n);
    Layer layer;
    layer.label = "generated";
    layer.path = dir / ("layer-" + std::to_string(n));
    std::ofstream(layer.path, std::ios::binary) << built.blob;
    layer.blob = std::make_shared<stargz::testing::StringBlobReader>(std::move(built.blob));
    layer.toc_digest = built.toc_digest;
    Measure(layer, runs);
    std::filesystem::remove(layer.path);
  }
  std::filesystem::remove(dir);
  if (!blob_path.empty()) {
    Layer layer;
    layer.label = "--blob";
    layer.path = blob_path;
    layer.blob = std::make_shared<stargz::testing::StringBlobReader>(ReadFileOrExit(blob_path));
    Measure(layer, runs);
  }
  return 0;
}
