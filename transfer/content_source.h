// A committed blob of the content store read front to back as a ByteSource (the
// interface decompression and tar reading take).
#pragma once

#include <memory>

#include "transfer/byte_source.h"
#include "transfer/content_store.h"

namespace strata::transfer {

std::unique_ptr<ByteSource> NewContentSource(std::unique_ptr<ContentReader> reader);

}  // namespace strata::transfer
