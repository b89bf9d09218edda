// stop_signals.h: the signals that end a waiting command (labctl lock --hold, labctl watch,
// labhost logs -f), taken synchronously.
#ifndef LABHOST_TOOLS_STOP_SIGNALS_H
#define LABHOST_TOOLS_STOP_SIGNALS_H

#include <pthread.h>
#include <signal.h>

namespace labhost::tools {

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread and in the threads it starts from now on,
/// and returns them: the caller waits for them with sigtimedwait, so that they reach it (and
/// it can say goodbye) rather than ending the process from whichever thread they land on.
/// Call it before starting any thread (a client's heartbeats, a subscription's pump).
inline sigset_t block_stop_signals() {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  return stop_signals;
}

}  // namespace labhost::tools

#endif  // LABHOST_TOOLS_STOP_SIGNALS_H
