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
    {"connect_timeout_ms", TF_OPT_CONNECT_TIMEOUT_MS},
    {"read_timeout_ms", TF_OPT_READ_TIMEOUT_MS},
    {"remote_retries", TF_OPT_REMOTE_RETRIES},
    {"remote_cache_mb", TF_OPT_REMOTE_CACHE_MB},
    {"verify_tls", TF_OPT_VERIFY_TLS},
    {"s3_addressing", TF_OPT_S3_ADDRESSING},
    {"remote_meta_mb", TF_OPT_REMOTE_META_MB},
    {"remote_threads", TF_OPT_REMOTE_THREADS},
    {"write_cfitsio", TF_OPT_WRITE_CFITSIO},
};

tf_option option_named(const std::string& name) {
  for (const auto& o : kOptions) {
    if (name == o.name) return o.opt;
  }
  TORCH_CHECK_VALUE(false, "torchfits: no option named '", name,
                    "' (options: threads, keep_mb, unpack_max_mb, table_max_mb, ",
                    "connect_timeout_ms, read_timeout_ms, remote_retries, remote_cache_mb, ",
                    "verify_tls, s3_addressing, remote_meta_mb, remote_threads, write_cfitsio)");
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

void set_remote_config(const std::string& key, const c10::optional<std::string>& value) {
  int st = tf_remote_set(key.c_str(), value ? value->c_str() : nullptr);
  TORCH_CHECK_VALUE(st != TF_EINVAL, "torchfits: no remote setting named '", key,
                    "' (aws_access_key_id, aws_secret_access_key, aws_session_token, "
                    "aws_region, aws_endpoint_url)");
  TORCH_CHECK(st == TF_OK, "torchfits: out of memory for a remote setting");
}

std::vector<int64_t> remote_stats(bool reset) {
  int64_t requests = 0, bytes = 0;
  tf_remote_stats(&requests, &bytes, reset ? 1 : 0);
  return {requests, bytes};
}

}  // namespace torchfits
