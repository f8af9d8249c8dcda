// Prints the CPU-feature probe's answer (native/cpu/cpu_features.cc) on one line, for
// test/native/cpu_features.test.ts to compare with /proc/cpuinfo.
#include <cstdio>

#include "../../../native/cpu/cpu_features.h"

int main() {
  std::printf("%s\n", openlora::cpu::describeCpuFeatures(openlora::cpu::cpuFeatures()).c_str());
  return 0;
}
