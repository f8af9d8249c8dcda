// openlora-cli's timing subcommands: bench (decode and prefill tokens/s over batch x adapters),
// roofline (copy bandwidth and the weights' step floor), ceilings (cpu/ceilings.h) and attention
// (decode attention alone, attention_bench.h). Each returns the process exit status.
#pragma once

#include "cli_args.h"

namespace openlora::cli {

/** `bench`: see openlora_cli.cc's usage. @throws UsageError, Unavailable, std::exception. */
int cmdBench(const Args& a);
/** `roofline`: copy bandwidth; with a model, the decode step's floor from its weight bytes. */
int cmdRoofline(const Args& a);
/** `ceilings`: the CPU's measured read bandwidth and compute peaks as JSON. */
int cmdCeilings(const Args& a);
/** `attention`: decode attention alone per context as JSON. @throws UsageError on bad sizes. */
int cmdAttention(const Args& a);

}  // namespace openlora::cli
