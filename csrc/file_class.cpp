// file_class.cpp - torch.classes.torchfits.File: a FITS file kept open
// across reads, for many cutouts of one large image (as fitsio and astropy
// keep theirs). The ops open, read and close on every call; this class
// keeps one core handle, with the file mapped (tf_map_file) so a cutout
// copies its rows from the page cache instead of making a pread per row.
//
// One handle serves one thread at a time: a call that finds it busy opens
// a handle of its own for that call, so threads sharing a File never wait
// on each other. A handle inherited across fork() is never used or closed
// in the child (cfitsio's stdio stream shares its file offset with the
// parent's): the child opens its own. After an error the handle is closed
// and the next call opens the file again, so one corrupt HDU does not
// poison reads of the others.
#include <torch/custom_class.h>
#include <unistd.h>

#include <atomic>
#include <mutex>

#include "ops.h"
#include "shim.h"

namespace torchfits {
namespace {

class File : public torch::CustomClassHolder {
 public:
  explicit File(std::string path) : path_(std::move(path)) { with([](tf_file*) { return 0; }); }

  ~File() override {
    if (pid_ == getpid()) tf_close(f_);
  }

  at::Tensor read(int64_t hdu, bool raw) {
    return with([&](tf_file* f) { return read_open(f, hdu, raw); });
  }

  at::Tensor read_cutout(int64_t hdu, std::vector<int64_t> start, std::vector<int64_t> shape,
                         c10::optional<std::vector<int64_t>> step, bool raw) {
    at::OptionalIntArrayRef steps;
    if (step.has_value()) steps = at::IntArrayRef(*step);
    return with([&](tf_file* f) { return read_cutout_open(f, hdu, start, shape, steps, raw); });
  }

  // Many regions of one shape in one call (starts: N corners, flattened):
  // the method call costs more than a small cutout's copy, so a batch of
  // stamps pays it once.
  at::Tensor read_cutouts(int64_t hdu, std::vector<int64_t> starts, std::vector<int64_t> shape,
                          bool raw) {
    return with([&](tf_file* f) { return read_cutouts_open(f, hdu, starts, shape, raw); });
  }

  InfoTuple info() {
    return with([](tf_file* f) { return info_open(f); });
  }

  void close() {
    std::lock_guard<std::mutex> lock(mu_);
    if (pid_ == getpid()) tf_close(f_);
    f_ = nullptr;
    closed_ = true;
  }

  bool closed() const { return closed_; }

  std::string path() const { return path_; }

 private:
  template <class Fn>
  auto with(Fn fn) -> decltype(fn(static_cast<tf_file*>(nullptr))) {
    std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
    TORCH_CHECK_VALUE(!closed_, path_, ": the file is closed");
    if (!lock.owns_lock()) {  // another thread is reading: a handle for this call
      return with_file(path_, fn);
    }
    if (pid_ != getpid()) {  // inherited across fork: leave it to the parent
      f_ = nullptr;
      pid_ = getpid();
    }
    if (!f_) {
      FileHandle h = open_confirmed(path_);
      check(tf_map_file(h.get()), h.get());
      f_ = h.release();
    }
    try {
      return fn(f_);
    } catch (...) {
      tf_close(f_);
      f_ = nullptr;
      throw;
    }
  }

  std::string path_;
  std::mutex mu_;
  tf_file* f_ = nullptr;
  pid_t pid_ = getpid();
  std::atomic<bool> closed_{false};  // read by callers that find the handle busy
};

}  // namespace

void register_file_class(torch::Library& m) {
  m.class_<File>("File")
      .def(torch::init<std::string>())
      .def("read", &File::read, "", {torch::arg("hdu") = 0, torch::arg("raw") = false})
      .def("read_cutout", &File::read_cutout, "",
           {torch::arg("hdu"), torch::arg("start"), torch::arg("shape"),
            torch::arg("step") = c10::nullopt, torch::arg("raw") = false})
      .def("read_cutouts", &File::read_cutouts, "",
           {torch::arg("hdu"), torch::arg("starts"), torch::arg("shape"),
            torch::arg("raw") = false})
      .def("info", &File::info)
      .def("close", &File::close)
      .def("closed", &File::closed)
      .def("path", &File::path);
}

}  // namespace torchfits
