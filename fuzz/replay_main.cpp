// fuzz/replay_main.cpp — main() for the fuzz targets when they are not built with
// -fsanitize=fuzzer: runs LLVMFuzzerTestOneInput over every file of the directories (or the
// files) given as arguments, and over every proper prefix of each file (truncation is the
// commonest malformation). Used by the CTest tests fuzz.<target>.corpus and to reproduce a crash
// input with any compiler:  build/fuzz/value_replay crash-1234abcd
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

std::vector<char> read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "replay: cannot read %s\n", p.c_str());
    std::exit(2);
  }
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// Runs one input from a heap block of exactly its size, as libFuzzer does, so that a sanitizer
// build catches a read past the end.
void run(const char* bytes, std::size_t n) {
  auto copy = std::make_unique<std::uint8_t[]>(n);
  if (n != 0) std::copy(bytes, bytes + n, copy.get());
  LLVMFuzzerTestOneInput(copy.get(), n);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR_OR_FILE...\n", argv[0]);
    return 2;
  }
  std::vector<std::filesystem::path> files;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path arg(argv[i]);
    std::error_code ec;
    if (std::filesystem::is_directory(arg, ec)) {
      for (const auto& e : std::filesystem::directory_iterator(arg))
        if (e.is_regular_file()) files.push_back(e.path());
    } else if (std::filesystem::is_regular_file(arg, ec)) {
      files.push_back(arg);
    } else {
      std::fprintf(stderr, "replay: %s is neither a file nor a directory\n", argv[i]);
      return 2;
    }
  }
  if (files.empty()) {
    std::fprintf(stderr, "replay: no input files\n");
    return 2;
  }
  std::sort(files.begin(), files.end());
  std::size_t runs = 0;
  for (const auto& p : files) {
    const std::vector<char> data = read_file(p);
    std::fprintf(stderr, "replay: %s (%zu bytes)\n", p.c_str(), data.size());
    for (std::size_t n = 0; n <= data.size(); ++n, ++runs) run(data.data(), n);
  }
  std::printf("replay: %zu files, %zu inputs with their prefixes, no failure\n", files.size(),
              runs);
  return 0;
}
