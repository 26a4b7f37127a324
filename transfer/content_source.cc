#include "transfer/content_source.h"

namespace strata::transfer {
namespace {

class ContentSource : public ByteSource {
 public:
  explicit ContentSource(std::unique_ptr<ContentReader> reader) : reader_(std::move(reader)) {}
  Result<size_t> Read(char* buf, size_t n) override {
    ASSIGN_OR_RETURN(size_t got, reader_->ReadAt(buf, n, offset_));
    offset_ += static_cast<int64_t>(got);
    return got;
  }

 private:
  std::unique_ptr<ContentReader> reader_;
  int64_t offset_ = 0;
};

}  // namespace

std::unique_ptr<ByteSource> NewContentSource(std::unique_ptr<ContentReader> reader) {
  return std::make_unique<ContentSource>(std::move(reader));
}

}  // namespace strata::transfer
