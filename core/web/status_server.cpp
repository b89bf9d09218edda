#include "status_server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/core/detail/base64.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <thread>

#include "../logging/log.h"
#include "../protocol/address.h"
#include "../service/session_info.h"
#include "status_collector.h"

namespace labhost::web {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto idle_timeout = std::chrono::seconds(60);  // a browser keeps its connection this long at most

/// True when the request carries the secret as its HTTP Basic password.
bool authorised(const http::request<http::string_body>& request, const std::string& secret) {
  if (secret.empty()) return true;
  auto header = request[http::field::authorization];
  constexpr std::string_view basic = "Basic ";
  if (!header.starts_with(basic)) return false;
  auto encoded = header.substr(basic.size());
  std::string decoded(beast::detail::base64::decoded_size(encoded.size()), '\0');
  auto [written, read] = beast::detail::base64::decode(decoded.data(), encoded.data(), encoded.size());
  decoded.resize(written);
  auto colon = decoded.find(':');
  if (colon == std::string::npos) return false;
  return service::secrets_equal(std::string_view(decoded).substr(colon + 1), secret);
}

/// The answer to one request.
http::response<http::string_body> answer(const http::request<http::string_body>& request, const std::string& secret,
                                         const status_collector& data) {
  auto reply = [&](http::status status, std::string content_type, std::string body) {
    http::response<http::string_body> r{status, request.version()};
    r.set(http::field::server, "labhost");
    r.set(http::field::content_type, content_type);
    r.set(http::field::cache_control, "no-store");
    r.keep_alive(request.keep_alive());
    r.body() = request.method() == http::verb::head ? std::string() : std::move(body);
    r.prepare_payload();
    return r;
  };
  if (!authorised(request, secret)) {
    auto r = reply(http::status::unauthorized, "text/plain; charset=utf-8", "the host's secret is needed\n");
    r.set(http::field::www_authenticate, "Basic realm=\"labhost\", charset=\"UTF-8\"");
    return r;
  }
  if (request.method() != http::verb::get && request.method() != http::verb::head) {
    auto r = reply(http::status::method_not_allowed, "text/plain; charset=utf-8", "GET only\n");
    r.set(http::field::allow, "GET, HEAD");
    return r;
  }
  const auto target = request.target();
  const auto path = target.substr(0, target.find('?'));
  if (path == "/" || path == "/index.html") return reply(http::status::ok, "text/html; charset=utf-8", status_page_html);
  if (path == "/api/status") return reply(http::status::ok, "application/json", data.status_json());
  if (path == "/metrics") return reply(http::status::ok, "text/plain; version=0.0.4; charset=utf-8", data.metrics_text());
  return reply(http::status::not_found, "text/plain; charset=utf-8", "no such page: " + std::string(path) + "\n");
}

/// One HTTP connection, plain or TLS: reads requests one after another and answers each.
template <typename Stream>
class http_session : public std::enable_shared_from_this<http_session<Stream>> {
 public:
  http_session(Stream stream, const std::string& secret, const status_collector& data)
      : stream_(std::move(stream)), secret_(secret), data_(data) {}

  void start() {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      read();
    } else {
      beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(30));
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (!ec) self->read();
                              });
    }
  }

 private:
  void read() {
    parser_.emplace();
    parser_->header_limit(16 * 1024);  // a browser's request is far smaller
    parser_->body_limit(64 * 1024);    // nothing here takes a body: read a small one, to refuse it politely
    beast::get_lowest_layer(stream_).expires_after(idle_timeout);
    http::async_read(stream_, buffer_, *parser_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->close();
      self->respond();
    });
  }

  void respond() {
    auto request = parser_->release();
    auto response = std::make_shared<http::response<http::string_body>>(answer(request, secret_, data_));
    http::async_write(stream_, *response,
                      [self = this->shared_from_this(), response](beast::error_code ec, std::size_t) {
                        if (ec || !response->keep_alive()) return self->close();
                        self->read();
                      });
  }

  void close() {
    beast::error_code ec;
    beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_both, ec);
  }

  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  const std::string& secret_;
  const status_collector& data_;
};

}  // namespace

struct status_server::impl {
  impl(server_settings s, const status_collector& d) : settings(std::move(s)), data(d), acceptor(io) {}

  void accept() {
    acceptor.async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
      if (ec) {
        if (ec != asio::error::operation_aborted) accept();
        return;
      }
      beast::tcp_stream stream(std::move(socket));
      if (tls)
        std::make_shared<http_session<beast::ssl_stream<beast::tcp_stream>>>(
            beast::ssl_stream<beast::tcp_stream>(std::move(stream), *tls), settings.secret, data)
            ->start();
      else
        std::make_shared<http_session<beast::tcp_stream>>(std::move(stream), settings.secret, data)->start();
      accept();
    });
  }

  server_settings settings;
  const status_collector& data;
  asio::io_context io;
  tcp::acceptor acceptor;
  std::unique_ptr<asio::ssl::context> tls;
  std::thread thread;
};

status_server::status_server(server_settings settings, const status_collector& data)
    : impl_(std::make_unique<impl>(std::move(settings), data)) {
  auto& s = impl_->settings;
  if (s.tls.enabled()) {
    auto context = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                         asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
    context->use_certificate_chain_file(s.tls.cert_file.string());
    context->use_private_key_file(s.tls.key_file.string(), asio::ssl::context::pem);
    if (s.tls.verify_clients) {
      context->load_verify_file(s.tls.ca_file.string());
      context->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
    }
    impl_->tls = std::move(context);
  }
  tcp::resolver resolver(impl_->io);
  boost::system::error_code ec;
  auto endpoints = resolver.resolve(s.listen.host, std::to_string(s.listen.port), ec);
  if (ec || endpoints.empty())
    throw std::runtime_error("http.listen: cannot resolve " + s.listen.to_string() + ": " + ec.message());
  const tcp::endpoint endpoint = *endpoints.begin();
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol());
  acceptor.set_option(tcp::acceptor::reuse_address(true));
  acceptor.bind(endpoint, ec);
  if (ec) throw std::runtime_error("http.listen: cannot listen on " + s.listen.to_string() + ": " + ec.message());
  acceptor.listen();
  impl_->accept();
  impl_->thread = std::thread([this] {
    try {
      impl_->io.run();
    } catch (const std::exception& e) {
      LABHOST_LOG(error) << "status page stopped: " << e.what();
    }
  });
}

status_server::~status_server() {
  asio::post(impl_->io, [this] {
    boost::system::error_code ec;
    impl_->acceptor.close(ec);
  });
  impl_->io.stop();
  impl_->thread.join();
}

std::string status_server::local_address() const {
  const auto local = impl_->acceptor.local_endpoint();
  return protocol::endpoint{local.address().to_string(), local.port()}.to_string();
}

}  // namespace labhost::web
