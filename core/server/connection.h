// connection.h: one client connection to a daemon: the transport of the server side.
//
// Reads frames one after another and hands each on: ping and goodbye it answers itself,
// hello and authenticate go to its handshake (handshake.h), everything else, once a session
// is open, to its dispatcher (dispatch.h). A call is handed to its service's strand after the
// next read has been started, so a slow call never stops this connection from reading
// (several requests in flight, matched by request id). Replies may come from any pool thread:
// the write queue and every operation on the socket are guarded by mutex_.
// On a TLS daemon, OpenSSL's state of a connection may be touched by one thread at a time:
// every read, write and close of tls_ then runs on the connection's strand_ as well, and
// replies are handed to it instead of being written on the thread that made them.
// Nothing escapes a connection: an exception while handling its bytes (no memory for a
// payload, no random bytes for a nonce) gets internal_error and closes this connection only;
// its session stays, to be resumed (guarded()).
// Lifetime: owned by shared_ptrs held in pending handlers; the daemon keeps a weak_ptr.
#ifndef LABHOST_SERVER_CONNECTION_H
#define LABHOST_SERVER_CONNECTION_H

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "../protocol/frame.h"
#include "../protocol/frame_buffer.h"
#include "daemon_state.h"
#include "dispatch.h"
#include "handshake.h"
#include "labhost/errors.h"
#include "session.h"

namespace labhost::server {

class connection : public std::enable_shared_from_this<connection> {
 public:
  connection(boost::asio::ip::tcp::socket socket, std::shared_ptr<daemon_state> state);
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  void start();
  /// Sends one typed error with request id 0 and closes: for connections refused at accept.
  void refuse(const error& e);
  /// Closes the socket now; pending replies are dropped.
  void stop();

  /// Sends one message with an encoded value payload. Thread-safe.
  void send_value(protocol::message_type type, std::uint32_t request_id, const value& payload);
  void send_error(std::uint32_t request_id, const error& e);
  /// Sends a frame made elsewhere (a call's result written in place). Thread-safe.
  void send(protocol::frame_buffer frame);
  /// Closes once the replies queued so far have gone out. Thread-safe.
  void close_after_flush();

  /// The handshake opened (or resumed) `s` on this connection (read chain only).
  void session_opened(std::shared_ptr<session> s, std::int64_t version);
  /// The session of this connection, null before hello. Set once, on the read chain.
  const std::shared_ptr<session>& current_session() const noexcept { return session_; }
  const std::string& peer() const noexcept { return peer_; }
  /// The subject of the client's TLS certificate; empty without one. Set before the first
  /// frame is read.
  const std::string& peer_certificate() const noexcept { return certificate_; }
  /// True on a TLS daemon: replies then go through the connection's strand.
  bool uses_tls() const noexcept { return tls_ != nullptr; }

  /// Runs `body`; an exception from it gets `request_id` an internal_error and closes this
  /// connection (its session is kept for a resume). Every handler of the connection's own
  /// runs through here.
  template <typename Body>
  void guarded(std::uint32_t request_id, Body&& body) noexcept {
    try {
      body();
    } catch (const std::exception& e) {
      fault(request_id, e.what());
    } catch (...) {
      fault(request_id, "an exception of unknown type");
    }
  }

 private:
  /// Arms the timer that drops a connection which opens no session in time.
  void arm_handshake_timer();
  /// TLS: refuses a client that speaks plain labhost frames (tls_required), else shakes
  /// hands, then runs `then` on the strand. `then` is kept in after_tls_ until then: it must
  /// not own the connection (a weak_ptr), or a connection whose handshake fails would keep
  /// itself alive, and its max_connections slot, for ever.
  void start_tls(std::function<void()> then);
  void on_first_bytes();
  void on_tls_handshake(const boost::system::error_code& ec);
  /// Goes on to the next frame: from the read buffer when the client sent it already.
  void do_read_header();
  void read_more();
  /// A whole header is buffered: checks it, then gets the payload.
  void on_buffered_header();
  /// Gets the payload of the frame whose header was just read, then handles the frame.
  void read_payload();
  void on_frame(const protocol::frame_header& header);
  /// The connection ended: an orderly close ends the session, a broken one only detaches it.
  void on_disconnect(bool orderly);
  /// What guarded() does with an exception: logs it, replies internal_error, closes.
  void fault(std::uint32_t request_id, std::string_view what) noexcept;

  void do_write();      // REQUIRES: mutex_ held
  void close_locked();  // REQUIRES: mutex_ held
  void close_socket();
  /// Starts operation(stream, handler) on this connection's stream: the TLS stream, with the
  /// handler bound to strand_, or the plain socket.
  template <typename Operation, typename Handler>
  void start_on_stream(Operation operation, Handler handler);

  boost::asio::ip::tcp::socket socket_;
  std::shared_ptr<daemon_state> state_;
  std::string peer_;  // "127.0.0.1:53122", for logs
  std::string certificate_;  // TLS client certificate subject (journal); written before reading starts
  using tls_stream = boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>;
  std::unique_ptr<tls_stream> tls_;  // set when the daemon serves TLS; used on strand_ only
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  std::function<void()> after_tls_;  // what start_tls() runs once TLS is up (strand_ only)

  // Touched only by the read chain (one read outstanding at a time).
  static constexpr std::size_t read_buffer_size = 16 * 1024;
  std::unique_ptr<std::uint8_t[]> read_buffer_;  // received, not yet handled: [begin, end)
  std::size_t buffered_begin_ = 0;
  std::size_t buffered_end_ = 0;
  protocol::frame_header header_;
  std::vector<std::uint8_t> payload_;
  handshake handshake_;    // hello and authenticate (read chain only)
  dispatcher dispatcher_;  // requests of the open session

  // Set by the handshake on the read chain before any later frame is read; read-only afterwards.
  std::shared_ptr<session> session_;
  // Drops a connection that has not opened a session in time (a client that says nothing).
  boost::asio::steady_timer handshake_timer_;

  std::mutex mutex_;  // guards the socket's operations, write_queue_ and the flags below
  struct pending_write {
    protocol::frame_buffer frame;
    std::size_t offset = 0;  // already written
  };
  std::deque<pending_write> write_queue_;
  bool writing_ = false;
  bool closed_ = false;
  bool close_after_flush_ = false;
  bool tls_established_ = false;  // TLS: the handshake is done, frames may be written
};

}  // namespace labhost::server

#endif  // LABHOST_SERVER_CONNECTION_H
