#include "transfer/image_store.h"

#include <mutex>

#include "core/clock.h"
#include "core/digest.h"
#include "core/filters.h"
#include "core/quote.h"
#include "snapshotter/snapshotter.h"

namespace strata::transfer {
namespace {

Image ToImage(const metadata::ImageRecord& r) {
  return Image{
      r.name,
      Descriptor{r.target.media_type, r.target.digest, r.target.size_bytes, r.target.annotations},
      r.labels, r.created_unix_nanos, r.updated_unix_nanos};
}

metadata::ImageRecord ToRecord(const Image& image) {
  return metadata::ImageRecord{
      image.name,
      metadata::Descriptor{image.target.media_type, image.target.digest, image.target.size_bytes,
                           image.target.annotations},
      image.labels, image.created_unix_nanos, image.updated_unix_nanos};
}

Status Validate(const Image& image) {
  if (image.name.empty()) return Status::InvalidArgument("image name must not be empty");
  const std::string context = "image " + Quote(image.name);
  RETURN_IF_ERROR(ValidateDigest(image.target.digest).WithContext(context + " target"));
  if (image.target.size_bytes <= 0) {
    return Status::InvalidArgument(context + ": target size must be greater than zero");
  }
  if (image.target.media_type.empty()) {
    return Status::InvalidArgument(context + ": target media type must be set");
  }
  return snapshotter::ValidateLabels(image.labels).WithContext(context);
}

class ImageAdaptor : public filters::Adaptor {
 public:
  explicit ImageAdaptor(const Image& image) : image_(image) {}
  std::optional<std::string> Field(const std::vector<std::string>& path) const override {
    if (path.empty()) return std::nullopt;
    if (path[0] == "name") return image_.name;
    if (path[0] == "target" && path.size() == 2) {
      if (path[1] == "digest") return image_.target.digest;
      if (path[1] == "mediatype") return image_.target.media_type;
      return std::nullopt;
    }
    if (path[0] == "labels") return MapFieldValue(path, 1, image_.labels);
    if (path[0] == "annotations") return MapFieldValue(path, 1, image_.target.annotations);
    return std::nullopt;
  }

 private:
  const Image& image_;
};

class Images : public ImageStore {
 public:
  explicit Images(metadata::Store* store) : store_(store) {}

  Result<Image> Get(const std::string& name) override {
    ASSIGN_OR_RETURN(metadata::ImageRecord r, store_->GetImage(name));
    return ToImage(r);
  }

  Result<std::vector<Image>> List(const std::vector<std::string>& filter_strings) override {
    ASSIGN_OR_RETURN(filters::Filter filter, filters::Filter::ParseAll(filter_strings));
    ASSIGN_OR_RETURN(std::vector<metadata::ImageRecord> records, store_->LoadImages());
    std::vector<Image> out;
    for (const auto& r : records) {
      Image image = ToImage(r);
      if (filter.MatchesAll() || filter.Match(ImageAdaptor(image))) out.push_back(std::move(image));
    }
    return out;
  }

  Result<Image> Create(const Image& image) override {
    Image created = image;
    DropEmptyValues(created.labels);
    RETURN_IF_ERROR(Validate(created));
    // Image changes are rare: one lock makes check-and-write atomic and keeps a name
    // invisible to others until its record is durable.
    std::lock_guard<std::mutex> lock(mu_);
    auto existing = store_->GetImage(image.name);
    if (existing.ok()) {
      return Status::AlreadyExists("image " + Quote(image.name) + " already exists");
    }
    if (!existing.status().IsNotFound()) return existing.status();
    created.created_unix_nanos = created.updated_unix_nanos = NowUnixNanos();
    metadata::Batch batch;
    batch.PutImage(ToRecord(created));
    RETURN_IF_ERROR(store_->Commit(batch));
    return created;
  }

  Result<Image> Update(const Image& image, const std::vector<std::string>& fieldpaths) override {
    if (image.name.empty()) return Status::InvalidArgument("image name must not be empty");
    std::lock_guard<std::mutex> lock(mu_);
    ASSIGN_OR_RETURN(metadata::ImageRecord record, store_->GetImage(image.name));
    Image updated = ToImage(record);
    if (fieldpaths.empty()) {
      updated.target = image.target;
      updated.labels = image.labels;
    }
    for (const auto& path : fieldpaths) {
      if (path == "target") {
        updated.target = image.target;
      } else if (!ApplyMapFieldPath("labels", path, image.labels, updated.labels) &&
                 !ApplyMapFieldPath("annotations", path, image.target.annotations,
                                    updated.target.annotations)) {
        return Status::InvalidArgument("cannot update field " + Quote(path) + " of image " +
                                       Quote(image.name));
      }
    }
    DropEmptyValues(updated.labels);
    RETURN_IF_ERROR(Validate(updated));
    updated.updated_unix_nanos = NowUnixNanos();
    metadata::Batch batch;
    batch.PutImage(ToRecord(updated));
    RETURN_IF_ERROR(store_->Commit(batch));
    return updated;
  }

  Status Delete(const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu_);
    // An undecodable record can still be deleted; only absence stops us.
    auto existing = store_->GetImage(name);
    if (existing.status().IsNotFound()) return existing.status();
    metadata::Batch batch;
    batch.DeleteImage(name);
    return store_->Commit(batch);
  }

 private:
  metadata::Store* const store_;
  std::mutex mu_;  // serialises changes
};

}  // namespace

std::unique_ptr<ImageStore> ImageStore::Open(metadata::Store* store) {
  return std::make_unique<Images>(store);
}

}  // namespace strata::transfer
