"""Where the fused CPU kernel's time goes: its passes timed by cutting the kernel after each, in C++.

Builds ``lgs_gpu/smoothing/backends/fused_cpu.cpp`` three times with the launcher's own compiler command: whole,
stopped after pass 1 (the gradient plane and row ranges) and after pass 2 (the window flags), the
later passes replaced by the barrier that ends an image. Each build runs in a small C++ driver that
times medians of ``--repeats`` calls on float32 ``[B, 3, size, size]`` noise, beside ``memcpy`` of
the same bytes, at each thread count and for one image (which stays in cache: the arithmetic alone)
and for ``--batch`` images (the memory traffic too). No Python between the calls.

Usage: ``python benchmarks/fused_cpu_passes.py [--batch 32] [--size 299] [--threads 1,2] [--repeats 31]``
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from lgs_gpu.smoothing.backends import fused_cpu

DRIVER = r"""
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include KERNEL
int main(int argc, char** argv) {
    const int threads = atoi(argv[1]), repeats = atoi(argv[4]);
    const int64_t batch = atoi(argv[2]), size = atoi(argv[3]), window = 15, overlap = 5;
    std::vector<float> x(batch * 3 * size * size), out(x.size()), copy(x.size()), m(size * size), low(size), high(size);
    srand(1);
    for (auto& value : x) value = rand() / (float)RAND_MAX;
    std::vector<int64_t> starts;
    for (int64_t start = 0; start + window <= size; start += window - overlap) starts.push_back(start);
    if (starts.back() + window < size) starts.push_back(size - window);
    std::vector<uint8_t> covered(starts.size() * size), passes(starts.size());
    auto median = [&](auto call) {
        std::vector<double> ms;
        for (int i = 0; i < repeats; i++) {
            auto started = std::chrono::steady_clock::now();
            call();
            ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count());
        }
        std::sort(ms.begin(), ms.end());
        return ms[ms.size() / 2];
    };
    double kernel = median([&] {
        lgs_output_float32(x.data(), out.data(), m.data(), low.data(), high.data(), covered.data(),
                           passes.data(), batch, 3, size, size, starts.data(), starts.size(), window, starts.data(),
                           starts.size(), window, 2.3, 0.1, threads);
    });
    double memcpy_ms = median([&] { memcpy(copy.data(), x.data(), x.size() * sizeof(float)); });
    printf("%.3f %.3f\n", kernel, memcpy_ms);
}
"""
ENDS = {  # the text after which a cut build stops each image, and the end of the image's loop
    "pass 1": "            // 2. Each window row",
    "passes 1-2": "            // 3. The columns",
}
IMAGE_END = "            }  // the barrier here keeps the next image's pass 1 off this image's m\n"


def variants(source: str) -> dict[str, str]:
    """The kernel's source whole and cut after pass 1 and after pass 2."""
    found = {"whole": source}
    for name, marker in ENDS.items():
        if marker not in source or IMAGE_END not in source:
            raise SystemExit(f"fused_cpu.cpp changed: no {marker.strip()!r} / image end to cut at")
        cut, rest = source.index(marker), source.index(IMAGE_END) + len(IMAGE_END)
        found[name] = source[:cut] + "#pragma omp barrier\n" + source[rest:]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=31)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, text in variants(fused_cpu.SOURCE.read_text()).items():
            kernel, driver, binary = Path(folder, f"{name}.cpp"), Path(folder, "driver.cpp"), Path(folder, name)
            kernel.write_text(text)
            driver.write_text(DRIVER)
            command = fused_cpu.compile_command(binary)
            command = [part for part in command if part not in ("-shared", "-fPIC", str(fused_cpu.SOURCE))]
            subprocess.run([*command, f'-DKERNEL="{kernel}"', str(driver)], check=True)
            for threads in args.threads.split(","):
                for batch in (1, args.batch):
                    printed = subprocess.run([str(binary), threads, str(batch), str(args.size), str(args.repeats)],
                                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
                    rows.append((name, threads, batch, float(printed[0]), float(printed[1])))
    print(f"float32 [B, 3, {args.size}, {args.size}], medians of {args.repeats}; ms per image")
    print("| build | threads | B | kernel | memcpy | kernel / memcpy |")
    print("|---|---|---|---|---|---|")
    for name, threads, batch, kernel, copy in rows:
        print(f"| {name} | {threads} | {batch} | {kernel / batch:.3f} | {copy / batch:.3f} | {kernel / copy:.1f}x |")


if __name__ == "__main__":
    main()
