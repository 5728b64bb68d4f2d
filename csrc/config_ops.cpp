// config_ops.cpp - kernels of set_option and get_option: the core's
// process-wide settings by name.
#include "ops.h"
#include "shim.h"

#include <cstring>

namespace torchfits {
namespace {

struct OptionName {
  const char* name;
  tf_option opt;
};
constexpr OptionName kOptions[] = {
    {"threads", TF_OPT_THREADS},
    {"keep_mb", TF_OPT_KEEP_MB},
    {"unpack_max_mb", TF_OPT_UNPACK_MAX_MB},
    {"table_max_mb", TF_OPT_TABLE_MAX_MB},
};

tf_option option_named(const std::string& name) {
  for (const auto& o : kOptions) {
    if (name == o.name) return o.opt;
  }
  TORCH_CHECK_VALUE(false, "torchfits: no option named '", name,
                    "' (options: threads, keep_mb, unpack_max_mb, table_max_mb)");
}

}  // namespace

int64_t set_option(const std::string& name, int64_t value) {
  tf_option opt = option_named(name);
  TORCH_CHECK_VALUE(value >= 0, "torchfits: option ", name, " must be >= 0, got ", value);
  int64_t previous = tf_get_option(opt);
  tf_set_option(opt, value);
  return previous;
}

int64_t get_option(const std::string& name) { return tf_get_option(option_named(name)); }

}  // namespace torchfits
