#pragma once
// Task id -> task actor, shared by admission (which adds and removes tasks), the HTTP routes
// (which look them up: a GET of a task's events needs no round trip through admission) and the
// stream router (which finds a task by its engine id).
#include <caf/actor.hpp>

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace llorch {

class task_directory {
public:
  void add(const std::string& task_id, std::uint64_t engine_id, caf::actor task) {
    std::lock_guard<std::mutex> lock(mutex_);
    tasks_[task_id] = task;
    by_engine_id_[engine_id] = std::move(task);
  }
  void remove(const std::string& task_id, std::uint64_t engine_id) {
    std::lock_guard<std::mutex> lock(mutex_);
    tasks_.erase(task_id);
    by_engine_id_.erase(engine_id);
  }
  // Invalid when there is no such task.
  caf::actor find(const std::string& task_id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = tasks_.find(task_id);
    return it == tasks_.end() ? caf::actor{} : it->second;
  }
  caf::actor find(std::uint64_t engine_id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = by_engine_id_.find(engine_id);
    return it == by_engine_id_.end() ? caf::actor{} : it->second;
  }

private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, caf::actor> tasks_;
  std::unordered_map<std::uint64_t, caf::actor> by_engine_id_;
};

} // namespace llorch
