#include "dispatch.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <limits>

#include "../logging/log.h"
#include "../protocol/value_versions.h"
#include "connection.h"
#include "daemon_state.h"
#include "worker_pool.h"

namespace labhost::server {

namespace asio = boost::asio;
using protocol::message_type;

void dispatcher::handle(message_type type, std::uint32_t request_id, value payload, std::size_t payload_bytes,
                        const std::shared_ptr<session>& caller) {
  if (!caller)
    return owner_.send_error(request_id, {errc::bad_message, "send hello before " +
                                                                 std::string(protocol::message_type_name(type))});
  switch (type) {
    case message_type::describe: return describe(request_id, payload);
    case message_type::call: return call(request_id, std::move(payload), payload_bytes, caller);
    case message_type::lock: return lock(request_id, payload, caller);
    case message_type::unlock: return unlock(request_id, payload, *caller);
    case message_type::lock_status: return lock_status(request_id, payload, *caller);
    case message_type::subscribe: return subscribe(request_id, payload, caller);
    case message_type::unsubscribe: return unsubscribe(request_id, payload, *caller);
    default:
      owner_.send_error(request_id, {errc::bad_message, "a client does not send " +
                                                            std::string(protocol::message_type_name(type)) +
                                                            " messages"});
  }
}

void dispatcher::describe(std::uint32_t request_id, const value& payload) {
  auto describe = protocol::parse_describe(payload);
  if (!describe) return owner_.send_error(request_id, describe.err());
  if (describe->service.empty()) {
    value d = protocol::to_value(state_.describe());
    if (describe->stats) d.as_map().emplace_back("stats", state_.stats());
    return owner_.send_value(message_type::description, request_id, d);
  }
  if (state_.names && describe->service == "nameserver")
    return owner_.send_value(message_type::description, request_id,
                             protocol::to_value(state_.nameserver_description(true)));
  service_slot* slot = service_or_reply(request_id, describe->service);
  if (slot == nullptr) return;
  owner_.send_value(message_type::description, request_id, protocol::to_value(state_.describe(*slot)));
}

void dispatcher::call(std::uint32_t request_id, value payload, std::size_t payload_bytes,
                      const std::shared_ptr<session>& caller) {
  auto call = protocol::parse_call(std::move(payload));
  if (!call) return owner_.send_error(request_id, call.err());
  if (state_.names && call->service == "nameserver") {
    // The name table is quick and guarded by its own mutex: answered right here.
    auto answer = state_.names->call(caller->info(), call->method, call->args, call->kwargs);
    if (!answer) return owner_.send_error(request_id, answer.err());
    return owner_.send_value(message_type::result, request_id, *answer);
  }
  auto it = state_.services.find(call->service);
  if (it == state_.services.end()) {
    std::string known;
    for (const auto& [name, unused] : state_.services) known += (known.empty() ? "" : ", ") + name;
    return owner_.send_error(request_id, {errc::no_such_service, "daemon " + state_.config.name + " has no service '" +
                                                                     call->service + "' (it has: " + known + ")"});
  }
  if (state_.shutting_down)
    return owner_.send_error(request_id, {errc::shutting_down, "daemon " + state_.config.name + " is stopping"});
  service_slot& slot = *it->second;
  if (caller->calls_in_flight() >= state_.config.max_requests_in_flight)
    return owner_.send_error(request_id, {errc::busy, "this session already has " +
                                                          std::to_string(state_.config.max_requests_in_flight) +
                                                          " calls in flight (max_requests_in_flight)"});
  state_.calls_in_flight.fetch_add(1);
  slot.calls_pending.fetch_add(1);
  caller->call_started();  // a session waiting on a call is alive, however long the call
  // dispatch: runs right here when the service is free (no thread hop), else queues on the
  // service's strand behind the call that holds it. With TLS this thread is inside the
  // connection's strand: post, so that a long call does not hold up the connection's I/O.
  // `this` lives in the connection, which `self` keeps alive.
  auto run = [this, self = owner_.shared_from_this(), request_id, payload_bytes, &slot, caller,
              call = std::move(*call)]() mutable {
    std::optional<protocol::frame_buffer> reply;
    std::optional<error> failure;
    const auto started = std::chrono::steady_clock::now();
    self->guarded(request_id, [&] {
      worker_pool::call_scope in_call(*state_.pool);
      reply = run_call(request_id, slot, *caller, call, failure);
    });
    const auto took = std::chrono::steady_clock::now() - started;
    if (!reply && !failure) failure = error{errc::internal_error, "the daemon could not run the call"};
    slot.stats.call_finished(took, failure ? std::optional<errc>(failure->code) : std::nullopt, payload_bytes,
                             reply ? reply->size() - protocol::header_size : 0);
    record_call(slot, *caller, call, failure);
    // A oneway call's success needs no reply; its failure does (the client reports it).
    if (call.oneway && reply && reply->head().size() >= protocol::header_size &&
        reply->head()[5] == static_cast<std::uint8_t>(message_type::result))
      reply.reset();
    // Counted out before the reply leaves, so that the client's next request, sent the moment
    // it reads this one, never finds the call still counted. Also after a failure: the
    // counts must not drift.
    slot.calls_pending.fetch_sub(1);
    caller->call_finished();
    state_.calls_in_flight.fetch_sub(1);
    if (reply) self->guarded(request_id, [&] { self->send(std::move(*reply)); });
  };
  if (owner_.uses_tls())
    asio::post(slot.strand, std::move(run));
  else
    asio::dispatch(slot.strand, std::move(run));
}

protocol::frame_buffer dispatcher::run_call(std::uint32_t request_id, service_slot& slot, const session& caller,
                                            const protocol::call_message& call, std::optional<error>& failure) {
  protocol::frame_buffer frame(std::vector<std::uint8_t>(protocol::header_size));  // the result follows
  failure = slot.svc->call(caller.info(), call.method, call.args, call.kwargs, frame, state_.config.max_frame_bytes);
  if (failure) {
    if (failure->code == errc::driver_error)
      LABHOST_LOG_SERVICE(info, slot.svc->name()) << call.method << ": " << failure->message;
    return protocol::frame_buffer(
        protocol::encode_frame(message_type::error, request_id, protocol::to_value(*failure)));
  }
  protocol::frame_header h;
  h.type = message_type::result;
  h.request_id = request_id;
  h.payload_size = static_cast<std::uint32_t>(frame.size() - protocol::header_size);
  protocol::write_header(h, std::span<std::uint8_t, protocol::header_size>(frame.head().data(), protocol::header_size));
  if (caller.version() < 2) {
    if (auto refused = protocol::downgrade_result_frame(frame)) {
      failure = refused;
      return protocol::frame_buffer(
          protocol::encode_frame(message_type::error, request_id, protocol::to_value(*refused)));
    }
  }
  return frame;
}

void dispatcher::record_call(service_slot& slot, session& caller, protocol::call_message& call,
                             const std::optional<error>& failure) {
  const auto who = caller.info();
  if (failure)
    state_.errors.add({std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(),
                       slot.svc->name(), call.method, who.client_name, *failure});
  // The arguments are the call's own, moved: the call is done with them.
  state_.journal_action(who, "call", slot.svc->name(), call.method,
                        map{{"args", std::move(call.args)}, {"kwargs", std::move(call.kwargs)}},
                        failure ? std::string(failure->name()) : "ok");
}

void dispatcher::subscribe(std::uint32_t request_id, const value& payload, const std::shared_ptr<session>& caller) {
  if (caller->version() < 2)
    return owner_.send_error(request_id, {errc::bad_message, "subscribe needs protocol version 2; this session speaks " +
                                                                 std::to_string(caller->version())});
  auto request = protocol::parse_subscribe(payload);
  if (!request) return owner_.send_error(request_id, request.err());
  service_slot* slot = service_or_reply(request_id, request->service);
  if (slot == nullptr) return;
  const auto topics = slot->svc->topics();
  auto topic = std::find_if(topics.begin(), topics.end(), [&](const auto& t) { return t.name == request->topic; });
  if (topic == topics.end()) {
    std::string known;
    for (const auto& t : topics) known += (known.empty() ? "" : ", ") + t.name;
    return owner_.send_error(request_id, {errc::no_such_topic, request->service + " has no topic '" + request->topic +
                                                                   "' (it has: " + (known.empty() ? "none" : known) + ")"});
  }
  const std::uint32_t id = caller->next_subscription_id(state_.config.max_subscriptions);
  if (id == 0)
    return owner_.send_error(request_id, {errc::busy, "this session already has " +
                                                          std::to_string(state_.config.max_subscriptions) +
                                                          " subscriptions (max_subscriptions)"});
  subscription::settings settings;
  settings.id = id;
  settings.service = request->service;
  settings.topic = request->topic;
  settings.topic_index = static_cast<std::uint32_t>(topic - topics.begin());
  settings.queue = static_cast<std::size_t>(request->queue);
  settings.queue_bytes = state_.config.subscriber_queue_bytes;
  settings.max_rate = request->max_rate;
  settings.stats = &slot->stats;
  protocol::subscription_report report{id, request->service, request->topic, topic->type, request->queue,
                                       request->max_rate};
  // The instance to listen to may have to be created (session mode): driver code, on the
  // service's strand.
  asio::post(slot->strand, [this, self = owner_.shared_from_this(), slot, caller, request_id,
                            settings = std::move(settings), report = std::move(report)]() mutable {
    self->guarded(request_id, [&] {
      auto hub = slot->svc->events_for(caller->info());
      if (!hub) return self->send_error(request_id, hub.err());
      auto s = std::make_shared<subscription>(state_.io, std::move(settings), *hub);
      (*hub)->add(s->config().topic_index, s);
      // The reply goes before the first event: the subscription is added to the session, and
      // so starts writing, only once the reply is queued.
      self->send_value(message_type::result, request_id, protocol::to_value(report));
      state_.journal_action(caller->info(), "subscribe", report.service, report.topic, nullptr, "ok");
      if (!caller->add_subscription(s)) return;
      LABHOST_LOG_SERVICE(debug, slot->svc->name())
          << caller->info().client_name << " subscribed to " << report.topic << " (subscription " << report.subscription
          << ")";
    });
  });
}

void dispatcher::unsubscribe(std::uint32_t request_id, const value& payload, session& caller) {
  auto request = protocol::parse_unsubscribe(payload);
  if (!request) return owner_.send_error(request_id, request.err());
  if (request->subscription <= 0 || request->subscription > std::numeric_limits<std::uint32_t>::max() ||
      !caller.remove_subscription(static_cast<std::uint32_t>(request->subscription)))
    return owner_.send_error(request_id, {errc::no_such_subscription, "this session has no subscription " +
                                                                          std::to_string(request->subscription)});
  owner_.send_value(message_type::result, request_id, nullptr);
}

service_slot* dispatcher::service_or_reply(std::uint32_t request_id, const std::string& name) {
  service_slot* slot = state_.find_service(name);
  if (slot == nullptr)
    owner_.send_error(request_id,
                      {errc::no_such_service, "daemon " + state_.config.name + " has no service '" + name + "'"});
  return slot;
}

service_slot* dispatcher::lockable_service_or_reply(std::uint32_t request_id, const std::string& name) {
  service_slot* slot = service_or_reply(request_id, name);
  if (slot != nullptr && !state_.config.lockable) {
    owner_.send_error(request_id, {errc::not_lockable,
                                   "daemon " + state_.config.name + " is shared: its services cannot be locked"});
    return nullptr;
  }
  return slot;
}

void dispatcher::lock(std::uint32_t request_id, const value& payload, const std::shared_ptr<session>& caller) {
  auto request = protocol::parse_lock(payload);
  if (!request) return owner_.send_error(request_id, request.err());
  service_slot* slot = lockable_service_or_reply(request_id, request->service);
  if (slot == nullptr) return;
  auto outcome = slot->svc->try_lock(caller->info());
  if (outcome != service::service::lock_result::held_by_other) {
    if (outcome == service::service::lock_result::granted) {
      LABHOST_LOG_SERVICE(info, slot->svc->name()) << "locked by " << caller->info().client_name;
      state_.journal_action(caller->info(), "lock", slot->svc->name(), "", nullptr, "ok");
    }
    return owner_.send_value(message_type::result, request_id,
                             protocol::to_value(state_.lock_report_for(*slot, caller->token())));
  }
  auto holder = slot->svc->holder();
  std::string held_by = holder ? service::describe_holder(*holder) : "another session";
  if (request->wait_ms <= 0) {
    state_.journal_action(caller->info(), "lock", slot->svc->name(), "", nullptr, "locked");
    return owner_.send_error(request_id, {errc::locked, slot->svc->name() + " is locked by " + held_by});
  }

  // Wait in line; the timer answers `locked` if the lock has not come free in time.
  auto waiter = std::make_shared<lock_waiter>(state_.io, owner_.weak_from_this(), caller, request_id);
  {
    std::lock_guard lock(slot->waiters_mutex);
    slot->waiters.push_back(waiter);
  }
  waiter->timer.expires_after(std::chrono::milliseconds(request->wait_ms));
  waiter->timer.async_wait([this, waiter, slot, wait_ms = request->wait_ms](boost::system::error_code ec) {
    if (ec) return;  // cancelled: granted
    {
      std::lock_guard lock(slot->waiters_mutex);
      if (waiter->done) return;
      waiter->done = true;
    }
    slot->stats.lock_waited(std::chrono::steady_clock::now() - waiter->since);
    state_.journal_action(waiter->who->info(), "lock", slot->svc->name(), "", nullptr, "locked");
    auto c = waiter->reply_to.lock();
    if (!c) return;
    c->guarded(waiter->request_id, [&] {
      auto holder_now = slot->svc->holder();
      c->send_error(waiter->request_id,
                    {errc::locked, slot->svc->name() + " is still locked by " +
                                       (holder_now ? service::describe_holder(*holder_now) : "another session") +
                                       " after waiting " + std::to_string(wait_ms) + " ms"});
    });
  });
  // The lock may have come free between try_lock and joining the line.
  state_.grant_waiters(*slot);
}

void dispatcher::unlock(std::uint32_t request_id, const value& payload, const session& caller) {
  auto request = protocol::parse_unlock(payload);
  if (!request) return owner_.send_error(request_id, request.err());
  service_slot* slot = lockable_service_or_reply(request_id, request->service);
  if (slot == nullptr) return;
  if (request->force) {
    if (state_.admin_secret.empty())
      return owner_.send_error(request_id, {errc::not_authorised, "force unlock is not enabled on daemon " +
                                                                      state_.config.name + " (host.json admin_secret_file)"});
    if (!service::secrets_equal(request->admin_secret, state_.admin_secret)) {
      LABHOST_LOG_SERVICE(warning, slot->svc->name())
          << "force unlock refused: wrong admin secret from " << caller.info().client_name << " at " << owner_.peer();
      state_.journal_action(caller.info(), "force_unlock", slot->svc->name(), "", nullptr, "not_authorised");
      return owner_.send_error(request_id, {errc::not_authorised, "wrong admin secret"});
    }
    auto former = slot->svc->force_unlock();
    if (former)
      LABHOST_LOG_SERVICE(warning, slot->svc->name())
          << "lock of " << former->holder.client_name << " force-released by " << caller.info().client_name;
    state_.journal_action(caller.info(), "force_unlock", slot->svc->name(), "",
                          former ? value(map{{"holder", former->holder.client_name}}) : value(nullptr), "ok");
  } else if (auto failure = slot->svc->unlock(caller.token())) {
    return owner_.send_error(request_id, *failure);
  } else {
    LABHOST_LOG_SERVICE(info, slot->svc->name()) << "unlocked by " << caller.info().client_name;
    state_.journal_action(caller.info(), "unlock", slot->svc->name(), "", nullptr, "ok");
  }
  owner_.send_value(message_type::result, request_id, nullptr);
  state_.grant_waiters(*slot);
}

void dispatcher::lock_status(std::uint32_t request_id, const value& payload, const session& caller) {
  auto request = protocol::parse_lock_status(payload);
  if (!request) return owner_.send_error(request_id, request.err());
  list reports;
  if (!request->service.empty()) {
    service_slot* slot = service_or_reply(request_id, request->service);
    if (slot == nullptr) return;
    reports.push_back(protocol::to_value(state_.lock_report_for(*slot, caller.token())));
  } else {
    for (auto& [name, slot] : state_.services)
      reports.push_back(protocol::to_value(state_.lock_report_for(*slot, caller.token())));
  }
  owner_.send_value(message_type::result, request_id, reports);
}

}  // namespace labhost::server
