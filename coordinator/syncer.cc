#include "coordinator/syncer.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <stdexcept>
#include <string>

#include "coordinator/store/store.h"

namespace segue {
namespace {

int NewEventFd() {
  const int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) throw std::runtime_error("syncer: cannot create an eventfd");
  return fd;
}

}  // namespace

Syncer::Syncer(Store* store, std::chrono::microseconds interval, Env* env, Mode mode)
    : store_(store), env_(env), interval_(interval), event_fd_(NewEventFd()) {
  if (mode == Mode::kBackground) thread_ = std::thread([this] { Loop(); });
}

Syncer::~Syncer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  requested_cv_.notify_one();
  stop_cv_.notify_one();
  if (thread_.joinable()) {
    thread_.join();
  } else {  // kOnDemand: what was asked for is made durable here
    uint64_t requested;
    {
      std::lock_guard<std::mutex> lock(mu_);
      requested = requested_;
    }
    (void)SyncNow(requested);
  }
  close(event_fd_);
}

void Syncer::Request(uint64_t seq) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (seq <= requested_) return;
    requested_ = seq;
    wake = waiting_for_request_;
  }
  if (wake) requested_cv_.notify_one();
}

Status Syncer::SyncNow(uint64_t seq) {
  if (durable() >= seq) return Status::Ok();
  // Every write up to seq has returned (the caller wrote them), so this sync covers them; a sync
  // of the syncer's own running at the same time is harmless (RocksDB orders them).
  Status s = TimedSync();
  if (!s.ok()) return s;
  Publish(seq);
  return Status::Ok();
}

void Syncer::Clear() {
  uint64_t n;
  [[maybe_unused]] ssize_t r = read(event_fd_, &n, sizeof(n));
}

Status Syncer::failure() const {
  if (!failed_.load()) return Status::Ok();
  std::lock_guard<std::mutex> lock(mu_);
  return failure_;
}

void Syncer::Publish(uint64_t seq) {
  uint64_t was = durable_.load();
  while (was < seq && !durable_.compare_exchange_weak(was, seq)) {
  }
  // Sequentially consistent with WakeAt: either this sees the loop's wish, or the loop sees the
  // new durable() when it checks after making it.
  const uint64_t want = wake_at_.load();
  if (want != 0 && want <= seq) Wake();
}

Status Syncer::TimedSync() {
  const uint64_t start_us = env_->NowMicros();
  Status s = store_->SyncWal();
  sync_ns_ += (env_->NowMicros() - start_us) * 1000;
  ++syncs_;
  return s;
}

void Syncer::Wake() {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t r = write(event_fd_, &one, sizeof(one));
}

void Syncer::Loop() {
  pthread_setname_np(pthread_self(), "segue-syncer");  // as top -H and perf show it
  std::unique_lock<std::mutex> lock(mu_);
  uint64_t last_start_us = 0;  // Env::NowMicros()
  for (;;) {
    waiting_for_request_ = true;
    requested_cv_.wait(lock, [&] { return stop_ || requested_ > durable(); });
    waiting_for_request_ = false;
    if (requested_ <= durable()) return;  // stopping, nothing left to sync
    if (!failure_.ok()) {                 // the loop stops the process; do not spin
      stop_cv_.wait(lock, [&] { return stop_; });
      return;
    }
    // At most one sync per interval; a request after a quiet spell is synced at once. Stopping
    // cuts the wait short. (One wait, measured on the Env's clock: a clock a test holds still
    // does not hold the syncer.)
    const uint64_t since_us = env_->NowMicros() - last_start_us;
    const auto interval_us = static_cast<uint64_t>(interval_.count());
    if (since_us < interval_us) {
      stop_cv_.wait_for(lock, std::chrono::microseconds(interval_us - since_us),
                        [&] { return stop_; });
    }
    if (requested_ <= durable()) continue;  // SyncNow got there meanwhile
    last_start_us = env_->NowMicros();
    // Every write numbered up to `target` returned before it was requested: one sync covers
    // them all, however many turns asked meanwhile (group commit).
    const uint64_t target = requested_;
    lock.unlock();
    Status s = TimedSync();
    lock.lock();
    if (!s.ok()) {
      failure_ = s;
      failed_ = true;
      Wake();
      continue;
    }
    lock.unlock();
    Publish(target);
    lock.lock();
  }
}

}  // namespace segue
