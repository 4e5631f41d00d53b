#pragma once
// Task id -> task actor and task stream, shared by admission (which adds and removes tasks), the
// HTTP routes (which look them up without a round trip through admission) and the stream router
// (which finds a task by its engine id).
#include "actors/control/task_stream.hpp"

#include <caf/actor.hpp>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace llorch {

class task_directory {
public:
  struct entry {
    caf::actor task; // invalid when there is no such task
    std::shared_ptr<task_stream> stream;
  };

  void add(const std::string& task_id, std::uint64_t engine_id, caf::actor task,
           std::shared_ptr<task_stream> stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    entry e{std::move(task), std::move(stream)};
    tasks_[task_id] = e;
    by_engine_id_[engine_id] = std::move(e);
  }
  void remove(const std::string& task_id, std::uint64_t engine_id) {
    std::lock_guard<std::mutex> lock(mutex_);
    tasks_.erase(task_id);
    by_engine_id_.erase(engine_id);
  }
  entry find(const std::string& task_id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = tasks_.find(task_id);
    return it == tasks_.end() ? entry{} : it->second;
  }
  entry find(std::uint64_t engine_id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = by_engine_id_.find(engine_id);
    return it == by_engine_id_.end() ? entry{} : it->second;
  }

private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, entry> tasks_;
  std::unordered_map<std::uint64_t, entry> by_engine_id_;
};

} // namespace llorch
