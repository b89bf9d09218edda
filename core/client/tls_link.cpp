#include "tls_link.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace labhost::client_detail {

namespace {

[[noreturn]] void fail(errc code, std::string message) { throw remote_error(error{code, std::move(message)}); }

/// OpenSSL's most specific reason for the last failure on this thread, and its reason code.
std::pair<std::string, int> openssl_reason() {
  std::string text;
  int reason = 0;
  while (unsigned long code = ERR_get_error()) {
    if (const char* r = ERR_reason_error_string(code)) text = r;
    reason = ERR_GET_REASON(code);
  }
  return {text.empty() ? "the connection closed during the TLS exchange" : text, reason};
}

/// True for the alerts a daemon sends when it does not accept this client's certificate.
bool is_client_certificate_refusal(int reason) {
  switch (reason) {
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
      return true;
    default:
      return false;
  }
}

// OpenSSL's own socket BIO writes with write(2), which raises SIGPIPE when the daemon has gone;
// a library must not kill its program for that. This BIO uses send(MSG_NOSIGNAL).
int bio_write(BIO* bio, const char* data, int size) {
  BIO_clear_retry_flags(bio);
  ssize_t n = ::send(static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(bio))), data,
                     static_cast<std::size_t>(size), MSG_NOSIGNAL);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_write(bio);
  return static_cast<int>(n);
}

int bio_read(BIO* bio, char* data, int size) {
  BIO_clear_retry_flags(bio);
  ssize_t n = ::recv(static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(bio))), data,
                     static_cast<std::size_t>(size), 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_read(bio);
  return static_cast<int>(n);
}

long bio_ctrl(BIO*, int command, long, void*) { return command == BIO_CTRL_FLUSH ? 1 : 0; }

int bio_create(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

const BIO_METHOD* socket_bio_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "labhost socket");
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    return m;
  }();
  return method;
}

struct ssl_context_deleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};

}  // namespace

tls_link::tls_link(int fd, const std::string& host, const tls_settings& settings, time_point deadline) : fd_(fd) {
  ERR_clear_error();
  std::unique_ptr<SSL_CTX, ssl_context_deleter> context(SSL_CTX_new(TLS_client_method()));
  if (!context) fail(errc::internal_error, "TLS: " + openssl_reason().first);
  SSL_CTX_set_min_proto_version(context.get(), TLS1_2_VERSION);
  SSL_CTX_set_verify(context.get(), SSL_VERIFY_PEER, nullptr);
  if (SSL_CTX_load_verify_locations(context.get(), settings.ca_file.c_str(), nullptr) != 1)
    fail(errc::auth_failed, "TLS CA file " + settings.ca_file + ": " + openssl_reason().first);
  if (!settings.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(context.get(), settings.cert_file.c_str()) != 1)
      fail(errc::auth_failed, "TLS certificate " + settings.cert_file + ": " + openssl_reason().first);
    const std::string& key = settings.key_file.empty() ? settings.cert_file : settings.key_file;
    if (SSL_CTX_use_PrivateKey_file(context.get(), key.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(context.get()) != 1)
      fail(errc::auth_failed, "TLS key " + key + ": " + openssl_reason().first);
  }
  ssl_ = SSL_new(context.get());  // holds its own reference to the context
  if (!ssl_) fail(errc::internal_error, "TLS: " + openssl_reason().first);
  try {
    SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    // The daemon's certificate must name the host this client connected to.
    in6_addr ip;
    bool is_ip = ::inet_pton(AF_INET, host.c_str(), &ip) == 1 || ::inet_pton(AF_INET6, host.c_str(), &ip) == 1;
    if (is_ip) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), host.c_str());
    } else {
      SSL_set1_host(ssl_, host.c_str());
      SSL_set_tlsext_host_name(ssl_, host.c_str());
    }
    BIO* bio = BIO_new(socket_bio_method());
    if (!bio) fail(errc::internal_error, "TLS: " + openssl_reason().first);
    BIO_set_data(bio, reinterpret_cast<void*>(static_cast<std::intptr_t>(fd_)));
    SSL_set_bio(ssl_, bio, bio);
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);

    while (true) {
      ERR_clear_error();
      int r = SSL_connect(ssl_);
      if (r == 1) break;
      int ssl_error = SSL_get_error(ssl_, r);
      if (ssl_error == SSL_ERROR_WANT_READ || ssl_error == SSL_ERROR_WANT_WRITE) {
        if (!wait_for_socket(ssl_error, deadline)) fail(errc::timeout, "no TLS handshake with " + host + " in time");
        continue;
      }
      auto [reason, code] = openssl_reason();
      if (long verify = SSL_get_verify_result(ssl_); verify != X509_V_OK)
        fail(errc::auth_failed,
             "the daemon's TLS certificate was refused: " + std::string(X509_verify_cert_error_string(verify)));
      if (is_client_certificate_refusal(code))
        fail(errc::auth_failed, "the daemon refused this client's TLS certificate (" + reason + ")");
      // A daemon without TLS answers the TLS greeting with a plain labhost frame, which OpenSSL
      // takes for a record of an unknown version.
      if (code == SSL_R_WRONG_VERSION_NUMBER)
        fail(errc::connection_lost, "the daemon at " + host + " does not serve TLS (" + reason + ")");
      fail(errc::connection_lost, "TLS handshake with " + host + " failed: " + reason);
    }
  } catch (...) {
    SSL_free(ssl_);
    throw;
  }
}

tls_link::~tls_link() { SSL_free(ssl_); }

bool tls_link::wait_for_socket(int ssl_error, std::optional<time_point> deadline) {
  while (true) {
    int timeout_ms = -1;
    if (deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      timeout_ms = static_cast<int>(left.count());
    }
    pollfd p{fd_, static_cast<short>(ssl_error == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN), 0};
    int r = ::poll(&p, 1, timeout_ms);
    if (r > 0) return true;  // ready, or an error that the next OpenSSL call reports
    if (r == 0) return false;
    if (errno != EINTR) return true;
  }
}

std::optional<error> tls_link::write_all(const std::uint8_t* data, std::size_t size, std::size_t& sent) {
  sent = 0;
  while (sent < size) {
    int ssl_error;
    std::string reason;
    {
      std::lock_guard lock(mutex_);
      ERR_clear_error();
      std::size_t n = 0;
      if (SSL_write_ex(ssl_, data + sent, size - sent, &n) == 1) {
        sent += n;
        continue;
      }
      ssl_error = SSL_get_error(ssl_, 0);
      if (ssl_error != SSL_ERROR_WANT_READ && ssl_error != SSL_ERROR_WANT_WRITE) reason = openssl_reason().first;
    }
    if (!reason.empty() || !wait_for_socket(ssl_error, std::nullopt))
      return error{errc::connection_lost,
                   "TLS send failed: " + (reason.empty() ? std::string(std::strerror(errno)) : reason)};
  }
  return std::nullopt;
}

bool tls_link::peer_closed() {
  std::lock_guard lock(mutex_);
  ERR_clear_error();
  char byte;
  std::size_t n = 0;
  if (SSL_peek_ex(ssl_, &byte, 1, &n) == 1) return false;  // data waits: open
  const int ssl_error = SSL_get_error(ssl_, 0);
  ERR_clear_error();
  return ssl_error != SSL_ERROR_WANT_READ && ssl_error != SSL_ERROR_WANT_WRITE;
}

std::optional<error> tls_link::read_exact(std::uint8_t* data, std::size_t size, std::optional<time_point> deadline,
                                          std::size_t& got) {
  got = 0;
  while (got < size) {
    int ssl_error;
    std::pair<std::string, int> reason;
    {
      std::lock_guard lock(mutex_);
      ERR_clear_error();
      std::size_t n = 0;
      if (SSL_read_ex(ssl_, data + got, size - got, &n) == 1) {
        got += n;
        continue;
      }
      ssl_error = SSL_get_error(ssl_, 0);
      if (ssl_error != SSL_ERROR_WANT_READ && ssl_error != SSL_ERROR_WANT_WRITE) reason = openssl_reason();
    }
    if (ssl_error == SSL_ERROR_ZERO_RETURN) return error{errc::connection_lost, "the daemon closed the connection"};
    if (ssl_error == SSL_ERROR_WANT_READ || ssl_error == SSL_ERROR_WANT_WRITE) {
      if (!wait_for_socket(ssl_error, deadline)) return error{errc::timeout, "no reply in time"};
      continue;
    }
    // With TLS 1.3 a daemon checks the client's certificate after the client's side of the
    // handshake is done: its refusal arrives as an alert on the first read.
    if (is_client_certificate_refusal(reason.second))
      return error{errc::auth_failed, "the daemon refused this client's TLS certificate (" + reason.first + ")"};
    if (ssl_error == SSL_ERROR_SYSCALL && reason.second == 0)
      return error{errc::connection_lost, "the daemon closed the connection"};
    return error{errc::connection_lost, "TLS receive failed: " + reason.first};
  }
  return std::nullopt;
}

void tls_link::close_notify() {
  std::lock_guard lock(mutex_);
  ERR_clear_error();
  SSL_shutdown(ssl_);
}

}  // namespace labhost::client_detail
