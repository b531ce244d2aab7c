#include "service/store/file_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "compressor/util/status_macros.h"
#include "service/store/list_request.h"

namespace kvc {
namespace {

constexpr char kSuffix[] = ".kvc";
constexpr char kTempSuffix[] = ".tmp";

absl::Status ErrnoStatus(int err, absl::string_view what, absl::string_view path) {
  std::string msg = absl::StrCat("file store: ", what, " ", path, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    case EROFS:
      return absl::FailedPreconditionError(msg);
    default:
      return absl::InternalError(msg);
  }
}

bool IsHexPair(const char* name) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); };
  return name[0] != '\0' && name[1] != '\0' && name[2] == '\0' && hex(name[0]) && hex(name[1]);
}

bool EndsWith(const std::string& s, absl::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix.data(), suffix.size()) == 0;
}

absl::Status FsyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECTORY);
  if (fd < 0) return ErrnoStatus(errno, "cannot open directory", path);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus(err, "cannot fsync directory", path);
  return absl::OkStatus();
}

// Creates `dir` if missing and makes its entry in `parent` durable, so that a synced file inside it is
// reachable after a crash.
absl::Status EnsureDir(const std::string& parent, const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) == 0) return FsyncPath(parent);
  if (errno == EEXIST) return absl::OkStatus();
  return ErrnoStatus(errno, "cannot create directory", dir);
}

absl::Status WriteAll(int fd, absl::string_view bytes, const std::string& path) {
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "cannot write", path);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<FileStore>> FileStore::Open(const std::string& root,
                                                           const StoreOptions& options) {
  if (root.empty()) return absl::InvalidArgumentError("file store: directory path is empty");
  if (options.capacity_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("file store: capacity_bytes must not be negative, got ", options.capacity_bytes));
  }
  // Resolved once: a relative root must keep naming the same directory if the process changes its cwd.
  std::error_code ec;
  std::filesystem::path absolute = std::filesystem::absolute(root, ec).lexically_normal();
  if (ec) return ErrnoStatus(ec.value(), "cannot resolve", root);
  std::string dir = absolute.string();
  if (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  std::filesystem::create_directories(dir, ec);
  if (ec) return ErrnoStatus(ec.value(), "cannot create directory", dir);
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return ErrnoStatus(errno, "cannot stat", dir);
  if (!S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("file store: ", dir, " is not a directory"));
  }

  std::string lock_path = dir + "/.lock";
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (lock_fd < 0) return ErrnoStatus(errno, "cannot open", lock_path);
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(lock_fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat("file store: ", dir, " is already open in another store (", lock_path, " is locked)"));
    }
    return ErrnoStatus(err, "cannot lock", lock_path);
  }
  std::unique_ptr<FileStore> store(new FileStore(dir, lock_fd, options.capacity_bytes, options.on_evict));
  KVC_RETURN_IF_ERROR(store->Scan());
  {
    // The capacity may have shrunk since the last run.
    absl::MutexLock lock(&store->mu_);
    store->EvictFor(0, "");
  }
  return store;
}

FileStore::FileStore(std::string root, int lock_fd, int64_t capacity_bytes,
                     std::function<void(int64_t)> on_evict)
    : root_(std::move(root)), lock_fd_(lock_fd), capacity_bytes_(capacity_bytes), on_evict_(std::move(on_evict)) {}

FileStore::~FileStore() { ::close(lock_fd_); }

std::string FileStore::ShardDir(const std::string& id) const {
  return absl::StrCat(root_, "/", id.substr(0, 2), "/", id.substr(2, 2));
}

std::string FileStore::EntryPath(const std::string& id) const {
  return absl::StrCat(ShardDir(id), "/", id, kSuffix);
}

absl::Status FileStore::Scan() {
  struct Found {
    std::string id;
    int64_t size;
    absl::Time created;
    absl::Time last_access;
  };
  std::vector<Found> found;
  auto list_dir = [](const std::string& dir, std::vector<std::string>* names) -> absl::Status {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return ErrnoStatus(errno, "cannot list", dir);
    errno = 0;
    while (struct dirent* e = ::readdir(d)) names->emplace_back(e->d_name);
    int err = errno;
    ::closedir(d);
    if (err != 0) return ErrnoStatus(err, "cannot list", dir);
    return absl::OkStatus();
  };

  std::vector<std::string> level1;
  KVC_RETURN_IF_ERROR(list_dir(root_, &level1));
  for (const std::string& a : level1) {
    if (!IsHexPair(a.c_str())) continue;
    std::vector<std::string> level2;
    KVC_RETURN_IF_ERROR(list_dir(absl::StrCat(root_, "/", a), &level2));
    for (const std::string& b : level2) {
      if (!IsHexPair(b.c_str())) continue;
      std::string dir = absl::StrCat(root_, "/", a, "/", b);
      std::vector<std::string> names;
      KVC_RETURN_IF_ERROR(list_dir(dir, &names));
      for (const std::string& name : names) {
        std::string path = absl::StrCat(dir, "/", name);
        if (name.size() > 1 && name[0] == '.' && EndsWith(name, kTempSuffix)) {
          // A Put that never reached its rename: the previous run died mid-write.
          if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
            return ErrnoStatus(errno, "cannot remove stale temp file", path);
          }
          continue;
        }
        if (!EndsWith(name, kSuffix)) continue;
        std::string id = name.substr(0, name.size() - (sizeof(kSuffix) - 1));
        // Files in the wrong shard are not ours to serve: a lookup would never find them.
        if (!ValidateCacheId(id).ok() || id.compare(0, 2, a) != 0 || id.compare(2, 2, b) != 0) continue;
        struct statx stx;
        if (::statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW, STATX_SIZE | STATX_MTIME | STATX_BTIME,
                    &stx) != 0) {
          if (errno == ENOENT) continue;
          return ErrnoStatus(errno, "cannot stat", path);
        }
        if (!S_ISREG(stx.stx_mode)) continue;
        absl::Time mtime =
            absl::FromUnixNanos(int64_t{stx.stx_mtime.tv_sec} * 1000000000 + stx.stx_mtime.tv_nsec);
        absl::Time created = mtime;
        if (stx.stx_mask & STATX_BTIME) {
          created = absl::FromUnixNanos(int64_t{stx.stx_btime.tv_sec} * 1000000000 + stx.stx_btime.tv_nsec);
        }
        found.push_back(Found{std::move(id), static_cast<int64_t>(stx.stx_size), created, mtime});
      }
    }
  }
  // Rebuild the LRU list oldest first; equal stamps (from another writer or a coarse filesystem clock)
  // fall back to id order so that the result does not depend on directory order.
  std::sort(found.begin(), found.end(), [](const Found& x, const Found& y) {
    return x.last_access != y.last_access ? x.last_access < y.last_access : x.id < y.id;
  });
  absl::MutexLock lock(&mu_);
  for (const Found& f : found) {
    Insert(f.id, f.size, f.created, f.last_access);
    last_stamp_ = std::max(last_stamp_, f.last_access);
  }
  return absl::OkStatus();
}

absl::Time FileStore::NextStamp() {
  absl::Time now = absl::Now();
  last_stamp_ = now > last_stamp_ ? now : last_stamp_ + absl::Nanoseconds(1);
  return last_stamp_;
}

void FileStore::Insert(const std::string& id, int64_t size, absl::Time created, absl::Time last_access) {
  auto [it, inserted] = entries_.try_emplace(id);
  if (!inserted) {
    used_bytes_ -= it->second.size_bytes;
    lru_.erase(it->second.lru);
  }
  it->second.size_bytes = size;
  it->second.created = created;
  it->second.last_access = last_access;
  it->second.lru = lru_.insert(lru_.end(), &it->first);
  used_bytes_ += size;
}

void FileStore::Touch(std::map<std::string, Entry>::iterator it, absl::Time stamp) {
  it->second.last_access = stamp;
  lru_.splice(lru_.end(), lru_, it->second.lru);
}

absl::Status FileStore::Remove(std::map<std::string, Entry>::iterator it) {
  std::string path = EntryPath(it->first);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(errno, "cannot remove", path);
  used_bytes_ -= it->second.size_bytes;
  lru_.erase(it->second.lru);
  entries_.erase(it);
  return absl::OkStatus();
}

void FileStore::EvictFor(int64_t incoming, const std::string& keep) {
  if (capacity_bytes_ == 0) return;
  auto victim = lru_.begin();
  while (used_bytes_ + incoming > capacity_bytes_ && victim != lru_.end()) {
    const std::string* id = *victim;
    ++victim;
    if (*id == keep) continue;
    auto it = entries_.find(*id);
    const int64_t size = it->second.size_bytes;
    // An entry that cannot be unlinked stays indexed (it is still on disk); the next Put tries again.
    if (Remove(it).ok() && on_evict_) on_evict_(size);
  }
}

absl::Status FileStore::Put(const std::string& id, absl::string_view bytes) {
  KVC_RETURN_IF_ERROR(ValidateCacheId(id));
  const int64_t size = static_cast<int64_t>(bytes.size());
  if (capacity_bytes_ > 0 && size > capacity_bytes_) {
    return absl::ResourceExhaustedError(absl::StrCat("file store ", root_, ": a value of ", size,
                                                     " bytes exceeds the capacity of ", capacity_bytes_,
                                                     " bytes"));
  }
  const std::string shard1 = absl::StrCat(root_, "/", id.substr(0, 2));
  const std::string dir = ShardDir(id);
  KVC_RETURN_IF_ERROR(EnsureDir(root_, shard1));
  KVC_RETURN_IF_ERROR(EnsureDir(shard1, dir));

  // O_EXCL plus a per-process counter keeps concurrent Puts of one id apart; the root lock keeps other
  // processes out.
  static std::atomic<uint64_t> temp_counter{0};
  const std::string temp = absl::StrFormat("%s/.%s.%d.%d%s", dir, id, ::getpid(),
                                           temp_counter.fetch_add(1, std::memory_order_relaxed), kTempSuffix);
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return ErrnoStatus(errno, "cannot create", temp);
  absl::Status written = WriteAll(fd, bytes, temp);
  if (written.ok() && ::fsync(fd) != 0) written = ErrnoStatus(errno, "cannot fsync", temp);
  if (!written.ok()) {
    ::close(fd);
    ::unlink(temp.c_str());
    return written;
  }

  const std::string path = EntryPath(id);
  {
    absl::MutexLock lock(&mu_);
    absl::Time stamp = NextStamp();
    // The mtime is the persisted access time. Failing to set it costs only LRU precision after a
    // restart, not the value, so it does not fail the Put.
    struct timespec times[2] = {absl::ToTimespec(stamp), absl::ToTimespec(stamp)};
    ::futimens(fd, times);
    if (::rename(temp.c_str(), path.c_str()) != 0) {
      absl::Status s = ErrnoStatus(errno, "cannot rename into place", path);
      ::close(fd);
      ::unlink(temp.c_str());
      return s;
    }
    Insert(id, size, stamp, stamp);
    EvictFor(0, id);
  }
  ::close(fd);
  absl::Status synced = FsyncPath(dir);
  if (!synced.ok()) {
    return absl::Status(synced.code(),
                        absl::StrCat(synced.message(), " (the value is stored but may not survive a crash)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> FileStore::OpenForRead(const std::string& id) {
  KVC_RETURN_IF_ERROR(ValidateCacheId(id));
  const std::string path = EntryPath(id);
  int fd;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) {
      return absl::NotFoundError(absl::StrCat("cache entry ", id, " not found in file store ", root_));
    }
    // Opening under the lock pins this version: a later rename or unlink does not change what fd reads.
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      int err = errno;
      if (err == ENOENT) {
        // Removed behind the store's back; forget it rather than fail every later Get the same way.
        used_bytes_ -= it->second.size_bytes;
        lru_.erase(it->second.lru);
        entries_.erase(it);
        return absl::NotFoundError(
            absl::StrCat("cache entry ", id, " not found in file store ", root_, " (file was removed)"));
      }
      return ErrnoStatus(err, "cannot open", path);
    }
    absl::Time stamp = NextStamp();
    Touch(it, stamp);
    struct timespec times[2] = {absl::ToTimespec(stamp), absl::ToTimespec(stamp)};
    ::futimens(fd, times);
  }
  return fd;
}

absl::StatusOr<std::string> FileStore::Get(const std::string& id) {
  KVC_ASSIGN_OR_RETURN(int fd, OpenForRead(id));  // validates the id first
  const std::string path = EntryPath(id);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    absl::Status s = ErrnoStatus(errno, "cannot stat", path);
    ::close(fd);
    return s;
  }
  std::string out;
  out.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      absl::Status s = n < 0 ? ErrnoStatus(errno, "cannot read", path)
                             : absl::DataLossError(absl::StrCat("file store: ", path, " is shorter than ",
                                                                out.size(), " bytes"));
      ::close(fd);
      return s;
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return out;
}

namespace {

class MappedValue : public CacheValue {
 public:
  MappedValue(void* data, size_t size) : data_(data), size_(size) {}
  ~MappedValue() override {
    if (size_ > 0) ::munmap(data_, size_);
  }
  absl::string_view bytes() const override {
    return absl::string_view(size_ > 0 ? static_cast<const char*>(data_) : "", size_);
  }

 private:
  void* data_;
  size_t size_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CacheValue>> FileStore::GetValue(const std::string& id) {
  KVC_ASSIGN_OR_RETURN(int fd, OpenForRead(id));  // validates the id first
  const std::string path = EntryPath(id);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    absl::Status s = ErrnoStatus(errno, "cannot stat", path);
    ::close(fd);
    return s;
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* data = nullptr;
  if (size > 0) {
    // MAP_POPULATE: the pages come from the page cache in one go instead of one fault at a time.
    data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (data == MAP_FAILED) {
      absl::Status s = ErrnoStatus(errno, "cannot map", path);
      ::close(fd);
      return s;
    }
  }
  ::close(fd);
  return std::make_unique<MappedValue>(data, size);
}

absl::StatusOr<CacheEntryInfo> FileStore::Stat(const std::string& id) {
  KVC_RETURN_IF_ERROR(ValidateCacheId(id));
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("cache entry ", id, " not found in file store ", root_));
  }
  return CacheEntryInfo{id, it->second.size_bytes, it->second.created, it->second.last_access};
}

absl::Status FileStore::Delete(const std::string& id) {
  KVC_RETURN_IF_ERROR(ValidateCacheId(id));
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("cache entry ", id, " not found in file store ", root_));
  }
  return Remove(it);
}

absl::StatusOr<ListPage> FileStore::List(const std::string& prefix, int page_size,
                                         const std::string& page_token) {
  KVC_ASSIGN_OR_RETURN(store_internal::ListRequest request,
                       store_internal::ParseListRequest(prefix, page_size, page_token));
  absl::MutexLock lock(&mu_);
  return store_internal::PageOf(request, entries_, [](auto it) {
    return CacheEntryInfo{it->first, it->second.size_bytes, it->second.created, it->second.last_access};
  });
}

int64_t FileStore::used_bytes() {
  absl::MutexLock lock(&mu_);
  return used_bytes_;
}

}  // namespace kvc
