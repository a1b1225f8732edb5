// The lane of the replicator (core/mirror/lane.ts, docs/mirror.md "The lane"): the
// primary's in-sync writes and fsyncs applied here, sent to the peer on a connection of
// their own and completed once the peer applied them, without entering JavaScript; and the
// secondary's side, which applies them in order and acknowledges each. The core decides
// when it runs, arms the extents it may write into, and takes back what it did (reports).
// No N-API here: these run on libfuse's workers and on the lane's own threads.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fuse-passthrough.h"

namespace tandem {
namespace fusefs {

class FrameMac;

// Blocks as runs: first block -> one past the last, apart and not touching. A file
// written in sequence is one run, where a set held every block (a 1 MiB write was 256
// insertions under the lane's lock, and the report as many numbers).
using BlockRuns = std::map<uint64_t, uint64_t>;
// Adds blocks [first, end) to `runs`, merging what it overlaps or touches.
void AddRun(BlockRuns& runs, uint64_t first, uint64_t end);

// What a lane did since its last report (LaneReport in core/mirror/lane.ts).
struct LaneReport {
  int64_t epoch = -1;  // -1: no lane was ever on
  bool stopped = false;
  std::string why;
  std::map<std::string, BlockRuns> marks;  // blocks of completed writes
  // Paths it wrote since its last report, completed or not, with the extents (of the hot
  // map, extentBytes each) those writes fell in.
  std::map<std::string, std::set<uint64_t>> touched;
  // Unfinished operations given back to the core: the id the application waits under (its
  // interceptor's), and the operation (its data stays valid until that id is answered).
  std::vector<std::pair<uint64_t, Intercepted>> resubmit;
  uint64_t completed = 0;
  // Operations completed with an error here (the first kReportErrorsMax): alone, any;
  // attached, an fsync or a durable write's own sync that failed here (LaneReport.errors in
  // core/mirror/lane.ts).
  struct Error {
    std::string path;
    std::string op;
    int error;
  };
  std::vector<Error> errors;
  // Paths of operations whose results differed on the two nodes (LaneReport.differed in
  // core/mirror/lane.ts): the core resends them.
  std::vector<std::string> differed;
};

class Lane : public std::enable_shared_from_this<Lane> {
 public:
  // `dirFd`: the replicated tree underneath (a secondary applies frames through it; duplicated).
  // `key`: the module's stream key (authenticates the lane's handshake and every frame).
  Lane(int dirFd, std::string key, uint32_t blockSize, uint32_t extentBytes);
  ~Lane();

  // ---- the JavaScript thread ----
  // The secondary's side: accepts the primary's lane connections on host:port. "" or an error.
  std::string Listen(const std::string& host, int port);
  // The primary's lane runs for session/epoch; connects to the peer's host:port first
  // (admits nothing until its handshake is done).
  void On(uint64_t session, uint64_t epoch, const std::string& host, int port);
  // The lane of a primary alone (no peer attached): what it admits is applied here only and
  // completes with this node's result, marked as any lane write. Off() waits for those under
  // way instead of giving them back to the core.
  void OnAlone(uint64_t epoch);
  LaneReport Off();
  LaneReport Harvest();
  void Arm(const std::string& path, const std::vector<uint64_t>& extents);
  // The secondary applies frames of this session and epoch (`on` false: none, once this returns).
  void Follow(bool on, uint64_t session, uint64_t epoch);
  // Where a lane that stops on its own sends its report (on the JavaScript thread).
  void SetReporter(std::function<void(LaneReport)> reporter);
  // Stops both sides and the listener (the wrapper's close; also the destructor's).
  void Close();
  // Counters for stats().
  uint64_t Completed() const;
  uint64_t Applied() const;
  uint64_t DurableWrites() const;
  uint64_t SparedFsyncs() const;
  // The paths this lane wrote into the tree (as primary or as secondary) since the last
  // call, for the disk port's whole-tree fsync, which knows only its own; *all when it
  // lost count (more than 100000 paths).
  std::vector<std::string> TakeWritten(bool* all);

  // ---- the mount (intercept mode) ----
  void Attach(Interceptor* interceptor);
  // The mount goes: unfinished operations fail (EIO) and count as marks of the next report.
  void Detach();

  // ---- libfuse's workers ----
  // Takes a write or an fsync if admitted (*taken); returns what the application gets (0
  // or -errno; a write's byte count is the caller's). `fd`: the open file underneath.
  int Offer(const Intercepted& op, int fd, bool datasync, bool* taken);
  // Around every operation handed to the core: none passes while the lane has operations
  // unfinished, and the lane admits none while the core has one.
  void BeginCore();
  void EndCore();

 private:
  struct Flight;
  struct Sender;
  void Connect(uint64_t generation, std::string host, int port);
  void ReadAcks(uint64_t generation, int fd, const std::string& sessionKey);
  // The connection's sender: sends the flights queued to it, in order, off the workers.
  void Send(std::shared_ptr<Sender> sender, uint64_t generation);
  static bool SendFlight(Sender& sender, const Flight& flight);
  void Serve(int listenFd);
  void FollowConnection(int fd);
  void ApplyFrames(int fd, uint64_t session, uint64_t epoch, const uint8_t* nonce, const uint8_t* peerNonce);
  LaneReport TakeLocked(bool stopped, const std::string& why);
  void NoteWritten(const std::string& path);
  // Stops the lane: unfinished operations go back to the core through the report.
  LaneReport StopLocked(const std::string& why);
  // The stopped report of a stop on its own, to the core through the intercept queue.
  void PostStopLocked(const std::string& why);
  // Ends the connection and the unfinished operations: given back (listed in `report`),
  // or failed and marked there when there is no core to give them to.
  void HaltLocked(LaneReport& report);
  void StopOnOwnLocked(uint64_t generation, const std::string& why);
  // Offer() alone: applied here outside the lock (workers write in parallel, as on a local
  // disk), the flight listed meanwhile so that the core and Off() wait for it.
  int OfferAlone(const Intercepted& op, int fd, bool datasync, std::unique_lock<std::mutex>& lock);
  void SettleLocked(Flight* flight);
  // A write, an fsync or a durable write's own sync (`syncing`) that failed here: completed
  // with that error, reported; the lane stops.
  void FailedHereLocked(Flight* flight, uint64_t generation, bool syncing);
  void Mark(const Intercepted& op);
  void NoteErrorLocked(const Intercepted& op, int error);
  void MarkInto(std::map<std::string, BlockRuns>& marks, const Intercepted& op) const;
  void TouchInto(std::map<std::string, std::set<uint64_t>>& touched, const Intercepted& op) const;
  // How the application syncs a path (docs/replicator.md, "Commits"). A path fsynced after
  // few writes is committed to: its next writes are made durable on both nodes before they
  // complete (the local sync on the worker while the peer syncs), so an fsync that finds
  // every completed write durable on both completes at once: write + fsync in one round trip.
  struct Habit {
    uint64_t birth = 0;  // tells a habit from one forgotten and made again
    uint64_t writes = 0;  // writes admitted
    uint64_t writesSinceFsync = 0;
    bool committed = false;  // its writes go durable
    bool datasync = true;  // how they are synced (an fsync asking more is not spared)
    // Every write completed is durable on both, as of this core epoch (no operation through
    // the core since, which could have changed the path unsynced).
    bool clean = false;
    uint64_t cleanEpoch = 0;
  };
  // The path's habit, made if new (bounded: past kHabitsMax paths all are forgotten).
  Habit& HabitOf(const std::string& path);

  const int dirFd_;
  const std::string key_;
  const uint32_t blockSize_;
  const uint32_t extentBytes_;

  mutable std::mutex mutex_;
  std::condition_variable coreCanGo_;
  // Flights whose sync here runs outside the lock; a stop of the lane's own waiting for
  // them (StopOnOwnLocked: the last to finish completes it); the signal of either.
  int syncing_ = 0;
  bool stopPending_ = false;
  std::string stopPendingWhy_;
  std::condition_variable syncsDone_;
  Interceptor* interceptor_ = nullptr;
  std::function<void(LaneReport)> reporter_;
  // The primary's lane.
  bool on_ = false;
  bool ready_ = false;
  bool alone_ = false;  // OnAlone: no peer, no connection
  uint64_t generation_ = 0;  // one per On: threads of an older one do nothing
  uint64_t session_ = 0;
  int64_t epoch_ = -1;
  int socket_ = -1;
  std::shared_ptr<Sender> sender_;  // this connection's (the frames' MAC and their order)
  uint64_t nextLseq_ = 1;
  std::map<std::string, std::set<uint64_t>> armed_;
  std::map<std::string, std::set<uint64_t>> armedSinceReport_;  // kept armed by the next harvest
  std::vector<Flight*> flights_;  // in the order applied here
  uint64_t withCore_ = 0;
  uint64_t coreWaiting_ = 0;  // in BeginCore, waiting for the lane's operations to finish
  LaneReport pending_;  // marks, touched and counts since the last report
  uint64_t completedTotal_ = 0;
  // Commits (docs/replicator.md, "Commits"): per path, whether its writes go durable and
  // whether an fsync of it may complete at once.
  std::map<std::string, Habit> habits_;
  uint64_t habitBirths_ = 0;
  uint64_t coreEpoch_ = 0;  // one per operation handed to the core: it may change any path
  uint64_t durableTotal_ = 0, sparedTotal_ = 0;
  // The secondary's side.
  mutable std::mutex followMutex_;  // held while a frame is applied
  bool following_ = false;
  uint64_t followSession_ = 0;
  uint64_t followEpoch_ = 0;
  int followFd_ = -1;
  int listenFd_ = -1;
  std::thread listener_;
  uint64_t appliedTotal_ = 0;
  // Paths written since TakeWritten (both sides).
  std::mutex writtenMutex_;
  std::set<std::string> written_;
  bool writtenAll_ = false;
};

}  // namespace fusefs
}  // namespace tandem
