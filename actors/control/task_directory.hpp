#pragma once
// Task id -> task actor, shared by admission (which adds and removes tasks) and the HTTP routes
// (which look them up): a GET of a task's events needs no round trip through admission.
#include <caf/actor.hpp>

#include <mutex>
#include <string>
#include <unordered_map>

namespace llorch {

class task_directory {
public:
  void add(const std::string& task_id, caf::actor task) {
    std::lock_guard<std::mutex> lock(mutex_);
    tasks_[task_id] = std::move(task);
  }
  void remove(const std::string& task_id) {
    std::lock_guard<std::mutex> lock(mutex_);
    tasks_.erase(task_id);
  }
  // Invalid when there is no such task.
  caf::actor find(const std::string& task_id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = tasks_.find(task_id);
    return it == tasks_.end() ? caf::actor{} : it->second;
  }

private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, caf::actor> tasks_;
};

} // namespace llorch
