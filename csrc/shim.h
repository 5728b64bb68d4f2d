// shim.h - what every kernel of the C++ shim shares: the handle's RAII
// owner, the one helper that turns core errors into TORCH_CHECK failures,
// and the dtype mapping. No FITS logic lives here.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <memory>
#include <string>

extern "C" {
#include "core/torchfits_core.h"
}

#ifndef TORCHFITS_HAS_UINT16
#define TORCHFITS_HAS_UINT16 0  // set by setup.py where torch has uint16/32/64
#endif

namespace torchfits {

struct FileCloser {
  void operator()(tf_file* f) const { tf_close(f); }
};
using FileHandle = std::unique_ptr<tf_file, FileCloser>;

// Throw the Python exception type documented for `status`, with the core's
// message (file, HDU, cause) and the status name.
[[noreturn]] void throw_status(int status, const char* message);

inline void check(int status, const tf_file* f) {
  if (status != TF_OK) {
    throw_status(status, tf_errmsg(f));
  }
}

// The bytes of the file name an op's `path` argument stands for. A path is
// any bytes but NUL. A name that is not UTF-8 (a Python str with surrogate
// escapes, or bytes) cannot cross the dispatcher as a str: the Python
// wrappers send it as "\0bytes:" and its bytes in hex, which no real path
// can be (it holds a NUL). Any other NUL is a ValueError.
std::string os_path(const std::string& path);

// A name (EXTNAME, column) as a C string: a NUL inside is a ValueError.
const char* c_name(const std::string& name, const char* what);

// A handle opened on `path` (an op's argument, see os_path); throws on
// failure.
FileHandle open_file(const std::string& path);

// Open `path` into a new handle: nullptr and a status where the open failed
// (the handle, with its message, in *failed).
FileHandle try_open(const std::string& path, int* status, FileHandle* failed);

// Run fn on a handle opened on `path` and return what it returns. A URL
// opened from the core's metadata cache may turn out to have changed
// since (tf_remote_stale): the whole call is then redone once on a fresh
// open, so no result mixes two versions of a file. Where fn made no
// request, one conditional request confirms the version
// (tf_remote_confirm).
template <class Fn>
auto with_file(const std::string& path, Fn&& fn) -> decltype(fn(static_cast<tf_file*>(nullptr))) {
  for (int attempt = 0;; attempt++) {
    int status = TF_OK;
    FileHandle failed;
    FileHandle f = try_open(path, &status, &failed);
    if (!f) {
      if (attempt == 0 && tf_remote_stale(failed.get())) continue;
      check(status, failed.get());
    }
    try {
      auto out = fn(f.get());
      check(tf_remote_confirm(f.get()), f.get());
      return out;
    } catch (...) {
      if (attempt == 0 && tf_remote_stale(f.get())) continue;
      throw;
    }
  }
}

// open_file, with the version of a URL opened from the metadata cache
// confirmed at once (for a handle kept open, whose later calls cannot be
// redone).
FileHandle open_confirmed(const std::string& path);

// HDU number from an int64 op argument; HDU -1 and such get the core's
// "does not exist" message.
int hdu_index(int64_t hdu);

// Resolve EXTNAME (and EXTVER, 0 = any) to an HDU number.
int find_hdu(tf_file* f, const std::string& extname, int64_t extver);

// The dtype a read returns, and the tf_dtype to ask the core for so the
// bytes match it (on a torch without torch.uint16/32/64, uint16 data comes
// back as int32, uint32 as int64 and uint64 as float64).
at::ScalarType to_scalar_type(tf_dtype dtype, tf_dtype* request);

// An uninitialised output tensor for the core to fill. Large ones come from
// tf_block_alloc (wrapped with at::from_blob): malloc below 32 MiB, which
// glibc recycles between calls, where torch's 64-byte-aligned allocation of
// the same size came back as fresh pages in a read loop beside other readers
// (100 to 200 page faults per 1-2 MiB read here, a third of the read's
// time); above, blocks the core keeps for reuse when their tensor is freed.
// An allocation that fails raises naming the file: "<path>: HDU <hdu>:
// cannot allocate N bytes for <what> (torch's cause) [TF_ENOMEM]".
at::Tensor new_output(tf_file* f, int hdu, const char* what, at::IntArrayRef shape,
                      at::ScalarType dtype);

// at::empty, with a failure that names the file as new_output's does.
at::Tensor empty_output(tf_file* f, int hdu, const std::string& what, at::IntArrayRef shape,
                        at::TensorOptions options);

// Raise for an allocation of `bytes` that failed with `err`, naming the file
// open on f (tf_fail_alloc).
[[noreturn]] void allocation_failed(tf_file* f, int hdu, size_t bytes, const std::string& what,
                                    const c10::Error& err);

// Put a region (start, shape and optional step, C order) into a request,
// checking that the lists agree and every step is >= 1.
void set_region(tf_image_request* req, at::IntArrayRef start, at::IntArrayRef shape,
                at::OptionalIntArrayRef step);

}  // namespace torchfits
