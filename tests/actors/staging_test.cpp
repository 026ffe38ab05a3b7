// Model staging on the deterministic scheduler: a real model store in a
// temporary directory, a scripted mock model source, and a virtual clock
// that makes the retry timers exact.

#include "actors/staging.hpp"

#include "messages/error.hpp"
#include "storage/database.hpp"
#include "storage/model_store.hpp"
#include "tests/caf_fixture.hpp"
#include "tests/test_util.hpp"

#include <caf/typed_event_based_actor.hpp>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using namespace rondo;

namespace {

/// What the mock source answers to one request.
struct scripted_reply {
  enum kind_t { bytes, error, hang } kind = bytes;
  std::string payload; // the model bytes, or the error text (ec::not_found)
};

/// The mock source's script and what it saw. Shared with the test.
struct source_script {
  std::deque<scripted_reply> replies;
  std::vector<std::string> requested;
  /// The buffers sent, to check that staging shares rather than copies.
  std::vector<std::shared_ptr<const std::string>> sent;
  /// Promises of `hang` replies, never delivered.
  std::vector<caf::typed_response_promise<model_blob>> hung;
  /// Runs on each request before the reply, if set.
  std::function<void(const std::string&)> on_request;
};

scripted_reply ok(std::string bytes) {
  return {scripted_reply::bytes, std::move(bytes)};
}

scripted_reply fail(std::string text) {
  return {scripted_reply::error, std::move(text)};
}

scripted_reply hang() {
  return {scripted_reply::hang, {}};
}

/// A model source that answers requests from its script and fails the test
/// on any request beyond it or any unexpected message.
model_source_actor::behavior_type
mock_source(model_source_actor::pointer self,
            std::shared_ptr<source_script> script) {
  self->set_default_handler(
    [](caf::scheduled_actor*,
       caf::message_view& x) -> caf::result<caf::message> {
      FAIL_CHECK("mock source: unexpected message "
                 << caf::to_string(x.content()));
      return caf::sec::unexpected_message;
    });
  return {
    [self, script](caf::get_atom,
                   const std::string& id) -> caf::result<model_blob> {
      script->requested.push_back(id);
      if (script->on_request)
        script->on_request(id);
      if (script->replies.empty()) {
        FAIL_CHECK("mock source: unexpected request for model " << id);
        return caf::make_error(ec::unspecified, "unexpected request");
      }
      auto reply = std::move(script->replies.front());
      script->replies.pop_front();
      switch (reply.kind) {
        case scripted_reply::bytes: {
          auto buf = std::make_shared<const std::string>(reply.payload);
          script->sent.push_back(buf);
          return model_blob{id, std::move(buf)};
        }
        case scripted_reply::error:
          return caf::make_error(ec::not_found, reply.payload);
        case scripted_reply::hang:
        default: {
          auto rp = self->make_response_promise<model_blob>();
          script->hung.push_back(rp);
          return rp;
        }
      }
    },
  };
}

/// What a requester got: a model or an error.
struct outcome {
  bool done = false;
  model_blob blob;
  caf::error err;
};

struct fixture : test::actor_fixture {
  fixture() {
    auto db = storage::database::open(dir.sub("db"));
    REQUIRE_MESSAGE(db, (db ? "" : rondo::render(db.error())));
    auto st = storage::model_store::open(*db);
    REQUIRE_MESSAGE(st, (st ? "" : rondo::render(st.error())));
    store = *st;
  }

  ~fixture() override {
    for (auto& a : spawned)
      self->send_exit(a, caf::exit_reason::user_shutdown);
    sched.run();
  }

  model_source_actor spawn_source() {
    auto src = sys.spawn(mock_source, script);
    spawned.push_back(caf::actor_cast<caf::actor>(src));
    return src;
  }

  staging_actor spawn_staging(model_source_actor source,
                              staging_config cfg = {}) {
    auto aut = sys.spawn(staging, store, std::move(source), cfg);
    spawned.push_back(caf::actor_cast<caf::actor>(aut));
    return aut;
  }

  void put(const std::string& id, const std::string& bytes) {
    auto res = store->put(id, bytes);
    REQUIRE_MESSAGE(res, (res ? "" : rondo::render(res.error())));
  }

  /// Sends (get, id) without running the scheduler.
  auto ask(const staging_actor& aut, const std::string& id) {
    return self->request(aut, caf::infinite, caf::get_atom::value, id);
  }

  /// Number of replies waiting in the test's mailbox.
  size_t replies() {
    return self->mailbox().size();
  }

  template <class Handle>
  outcome take(Handle& rh) {
    outcome out;
    REQUIRE(replies() > 0);
    rh.receive(
      [&](model_blob& blob) {
        out.done = true;
        out.blob = std::move(blob);
      },
      [&](caf::error& err) {
        out.done = true;
        out.err = std::move(err);
      });
    return out;
  }

  /// Stages `id` and returns what came back once messages (not timers) ran.
  outcome get_now(const staging_actor& aut, const std::string& id) {
    auto rh = ask(aut, id);
    sched.run();
    return take(rh);
  }

  test::temp_dir dir;
  std::shared_ptr<storage::model_store> store;
  std::shared_ptr<source_script> script = std::make_shared<source_script>();
  std::vector<caf::actor> spawned;
};

} // namespace

TEST_CASE_FIXTURE(fixture,
                  "staging: served from the store and then from the cache") {
  auto model = test::random_bytes(4096);
  put("m-1", model);
  auto aut = spawn_staging(spawn_source());
  auto first = get_now(aut, "m-1");
  REQUIRE_MESSAGE(!first.err, render(first.err));
  CHECK(first.blob.model_id == "m-1");
  REQUIRE(first.blob.bytes != nullptr);
  CHECK(*first.blob.bytes == model);
  // Gone from the store: the cache still has it, the very same buffer.
  CHECK(!store->remove("m-1"));
  auto second = get_now(aut, "m-1");
  REQUIRE_MESSAGE(!second.err, render(second.err));
  CHECK(second.blob.bytes == first.blob.bytes);
  CHECK(script->requested.empty());
}

TEST_CASE_FIXTURE(fixture,
                  "staging: concurrent requests for one model share one fetch") {
  script->replies.push_back(ok("global model bytes"));
  auto aut = spawn_staging(spawn_source());
  auto rh1 = ask(aut, "m-2");
  auto rh2 = ask(aut, "m-2");
  auto rh3 = ask(aut, "m-2");
  sched.run();
  auto a = take(rh1);
  auto b = take(rh2);
  auto c = take(rh3);
  REQUIRE_MESSAGE(!a.err, render(a.err));
  REQUIRE_MESSAGE(!b.err, render(b.err));
  REQUIRE_MESSAGE(!c.err, render(c.err));
  CHECK(script->requested == std::vector<std::string>{"m-2"});
  REQUIRE(a.blob.bytes != nullptr);
  CHECK(*a.blob.bytes == "global model bytes");
  // One buffer for everyone: the one the source sent, never copied.
  CHECK(a.blob.bytes == script->sent.at(0));
  CHECK(b.blob.bytes == a.blob.bytes);
  CHECK(c.blob.bytes == a.blob.bytes);
  // Later requests are cache hits.
  auto d = get_now(aut, "m-2");
  CHECK(d.blob.bytes == a.blob.bytes);
  CHECK(script->requested.size() == 1);
}

TEST_CASE_FIXTURE(fixture,
                  "staging: a failed try is retried after exactly the retry delay") {
  script->replies.push_back(fail("controller unavailable"));
  script->replies.push_back(ok("model after retry"));
  auto aut = spawn_staging(spawn_source()); // 3 tries, 1 s apart
  auto rh = ask(aut, "m-4");
  sched.run();
  CHECK(script->requested.size() == 1);
  CHECK(replies() == 0);
  advance_time(999ms);
  sched.run();
  CHECK(script->requested.size() == 1);
  CHECK(replies() == 0);
  advance_time(1ms);
  sched.run();
  CHECK(script->requested.size() == 2);
  auto res = take(rh);
  REQUIRE_MESSAGE(!res.err, render(res.err));
  CHECK(*res.blob.bytes == "model after retry");
}

TEST_CASE_FIXTURE(fixture,
                  "staging: when every try fails the request fails with the reason") {
  staging_config cfg;
  cfg.max_tries = 3;
  cfg.retry_delay = 1s;
  for (size_t i = 0; i < cfg.max_tries; ++i)
    script->replies.push_back(fail("model m-3 does not exist"));
  auto aut = spawn_staging(spawn_source(), cfg);
  auto start = sched.clock().now();
  auto rh = ask(aut, "m-3");
  sched.run();
  CHECK(script->requested.size() == 1);
  for (size_t i = 1; i < cfg.max_tries; ++i) {
    advance_time(cfg.retry_delay - 1ms);
    sched.run();
    CHECK(script->requested.size() == i);
    CHECK(replies() == 0);
    advance_time(1ms);
    sched.run();
    CHECK(script->requested.size() == i + 1);
  }
  CHECK(sched.clock().now() - start == (cfg.max_tries - 1) * cfg.retry_delay);
  auto res = take(rh);
  CHECK(res.err == ec::staging_failed);
  CHECK(render(res.err)
        == "rondo.staging_failed: staging model m-3 failed after 3 tries: "
           "rondo.not_found: model m-3 does not exist");
  CHECK(script->requested.size() == cfg.max_tries);
  // No further timer fires a fourth request.
  advance_time(1h);
  sched.run();
  CHECK(script->requested.size() == cfg.max_tries);
}

TEST_CASE_FIXTURE(fixture,
                  "staging: back-off multiplies the delay between tries") {
  staging_config cfg;
  cfg.max_tries = 4;
  cfg.retry_delay = 100ms;
  cfg.backoff = 2.0;
  for (int i = 0; i < 3; ++i)
    script->replies.push_back(fail("not yet"));
  script->replies.push_back(ok("finally"));
  auto aut = spawn_staging(spawn_source(), cfg);
  auto rh = ask(aut, "m-5");
  sched.run();
  // Retries after 100 ms, then 200 ms, then 400 ms.
  for (auto [delay, expected] : {std::pair{100ms, size_t{2}},
                                 std::pair{200ms, size_t{3}},
                                 std::pair{400ms, size_t{4}}}) {
    advance_time(delay - 1ms);
    sched.run();
    CHECK(script->requested.size() == expected - 1);
    advance_time(1ms);
    sched.run();
    CHECK(script->requested.size() == expected);
  }
  auto res = take(rh);
  REQUIRE_MESSAGE(!res.err, render(res.err));
  CHECK(*res.blob.bytes == "finally");
}

TEST_CASE_FIXTURE(fixture,
                  "staging: without a source a missing model fails after max_tries") {
  auto aut = spawn_staging(model_source_actor{});
  auto rh = ask(aut, "m-9");
  sched.run();
  advance_time(1s);
  sched.run();
  CHECK(replies() == 0);
  advance_time(1s);
  sched.run();
  auto res = take(rh);
  CHECK(res.err == ec::staging_failed);
  CHECK(render(res.err)
        == "rondo.staging_failed: staging model m-9 failed after 3 tries: "
           "rondo.not_found: model m-9 does not exist");
}

TEST_CASE_FIXTURE(fixture,
                  "staging: a model that appears in the store between tries is found") {
  auto aut = spawn_staging(model_source_actor{});
  auto rh = ask(aut, "m-6");
  sched.run();
  advance_time(1s);
  sched.run();
  CHECK(replies() == 0);
  put("m-6", "late model");
  advance_time(1s);
  sched.run();
  auto res = take(rh);
  REQUIRE_MESSAGE(!res.err, render(res.err));
  CHECK(*res.blob.bytes == "late model");
}

TEST_CASE_FIXTURE(fixture,
                  "staging: a model from the source is written to the store") {
  script->replies.push_back(ok("from the controller"));
  auto aut = spawn_staging(spawn_source());
  auto res = get_now(aut, "m-7");
  REQUIRE_MESSAGE(!res.err, render(res.err));
  auto stored = store->get("m-7");
  REQUIRE_MESSAGE(stored, (stored ? "" : rondo::render(stored.error())));
  CHECK(*stored == "from the controller");
  // A second stager without a source finds it locally.
  auto other = spawn_staging(model_source_actor{});
  auto again = get_now(other, "m-7");
  REQUIRE_MESSAGE(!again.err, render(again.err));
  CHECK(*again.blob.bytes == "from the controller");
  CHECK(script->requested.size() == 1);
}

TEST_CASE_FIXTURE(fixture,
                  "staging: a model the store got meanwhile is served from the source") {
  // Someone writes the model to the store while the source request is in
  // flight: writing it again fails with already_exists, which is fine.
  script->on_request = [this](const std::string& id) { put(id, "same model"); };
  script->replies.push_back(ok("same model"));
  auto aut = spawn_staging(spawn_source());
  auto res = get_now(aut, "m-8");
  REQUIRE_MESSAGE(!res.err, render(res.err));
  CHECK(*res.blob.bytes == "same model");
  CHECK(res.blob.bytes == script->sent.at(0));
  auto& st
    = deref<caf::stateful_actor<staging_state, staging_actor::base>>(aut).state;
  CHECK(!st.last_store_write_error);
}

TEST_CASE_FIXTURE(fixture,
                  "staging: a source request that times out counts as a failed try") {
  staging_config cfg;
  cfg.source_timeout = 5s;
  script->replies.push_back(hang());
  script->replies.push_back(ok("second time lucky"));
  auto aut = spawn_staging(spawn_source(), cfg);
  auto rh = ask(aut, "m-10");
  sched.run();
  CHECK(script->requested.size() == 1);
  advance_time(5s); // the request times out; the retry is armed
  sched.run();
  CHECK(script->requested.size() == 1);
  CHECK(replies() == 0);
  advance_time(1s);
  sched.run();
  CHECK(script->requested.size() == 2);
  auto res = take(rh);
  REQUIRE_MESSAGE(!res.err, render(res.err));
  CHECK(*res.blob.bytes == "second time lucky");
}

TEST_CASE_FIXTURE(fixture,
                  "staging: an invalid model id fails at once with invalid_argument") {
  auto aut = spawn_staging(spawn_source());
  for (const auto& id : {std::string{}, std::string(300, 'x'),
                         std::string{"a\nb"}}) {
    auto res = get_now(aut, id);
    CHECK(res.err == ec::invalid_argument);
  }
  CHECK(script->requested.empty());
  CHECK(sched.clock().schedule().empty());
}

TEST_CASE_FIXTURE(fixture,
                  "staging: the cache evicts the least recently used model over budget") {
  staging_config cfg;
  cfg.cache_bytes = 250;
  cfg.max_tries = 1;
  put("a", std::string(100, 'a'));
  put("b", std::string(100, 'b'));
  put("c", std::string(100, 'c'));
  put("huge", std::string(300, 'h'));
  auto aut = spawn_staging(model_source_actor{}, cfg);
  for (auto id : {"a", "b", "a", "c", "huge"}) {
    auto res = get_now(aut, id);
    REQUIRE_MESSAGE(!res.err, render(res.err));
    CHECK(res.blob.bytes->size() == (std::string{id} == "huge" ? 300 : 100));
  }
  auto& st
    = deref<caf::stateful_actor<staging_state, staging_actor::base>>(aut).state;
  // b was least recently used when c came in; huge exceeds the budget.
  CHECK(st.cached_ids() == std::vector<std::string>{"c", "a"});
  CHECK(st.cached_bytes() == 200);
  for (auto id : {"a", "b", "c", "huge"})
    CHECK(!store->remove(id));
  CHECK(!get_now(aut, "a").err);
  CHECK(!get_now(aut, "c").err);
  CHECK(get_now(aut, "b").err == ec::staging_failed);
  CHECK(get_now(aut, "huge").err == ec::staging_failed);
}

TEST_CASE_FIXTURE(fixture,
                  "staging: committed drops every cached model but the new one") {
  staging_config cfg;
  cfg.cache_bytes = 1000;
  for (auto id : {"g1", "agg1", "g2"})
    put(id, std::string(100, id[0]));
  auto aut = spawn_staging(model_source_actor{}, cfg);
  for (auto id : {"g1", "agg1", "g2"})
    REQUIRE(!get_now(aut, id).err);
  auto& st
    = deref<caf::stateful_actor<staging_state, staging_actor::base>>(aut).state;
  REQUIRE(st.cached_models() == 3);
  self->send(aut, committed_atom::value, std::string{"g2"});
  sched.run();
  CHECK(st.cached_ids() == std::vector<std::string>{"g2"});
  CHECK(st.cached_bytes() == 100);
  // A committed model that is not cached empties the cache.
  self->send(aut, committed_atom::value, std::string{"g3"});
  sched.run();
  CHECK(st.cached_models() == 0);
  CHECK(st.cached_bytes() == 0);
}

TEST_CASE("staging: cache bookkeeping without an actor system") {
  staging_state st;
  st.cfg.cache_bytes = 10;
  auto buf = [](size_t n) {
    return std::make_shared<const std::string>(n, 'x');
  };
  CHECK(st.cache_insert("a", buf(4)));
  CHECK(st.cache_insert("b", buf(4)));
  CHECK(st.cache_find("a") != nullptr); // a becomes most recently used
  CHECK(st.cache_insert("c", buf(4)));  // evicts b
  CHECK(st.cached_ids() == std::vector<std::string>{"c", "a"});
  CHECK(st.cache_find("b") == nullptr);
  CHECK(!st.cache_insert("d", buf(11)));
  CHECK(st.cached_bytes() == 8);
  CHECK(st.cache_insert("a", buf(10))); // replacing a evicts c
  CHECK(st.cached_ids() == std::vector<std::string>{"a"});
  CHECK(st.cached_bytes() == 10);
  st.cfg.retry_delay = 1s;
  st.cfg.backoff = 3;
  CHECK(st.retry_delay_after(1) == 1s);
  CHECK(st.retry_delay_after(3) == 9s);
  CHECK(st.retry_delay_after(1000) > 24h * 365 * 100);
}

TEST_CASE_FIXTURE(fixture,
                  "staging: waiting requests fail when the actor stops") {
  script->replies.push_back(hang());
  auto aut = spawn_staging(spawn_source());
  auto rh = ask(aut, "m-11");
  sched.run();
  self->send_exit(aut, caf::exit_reason::user_shutdown);
  sched.run();
  auto res = take(rh);
  CHECK(res.err == ec::terminated);
}

TEST_CASE("staging: configuration is validated") {
  CHECK(!validate(staging_config{}));
  staging_config cfg;
  cfg.max_tries = 0;
  CHECK(validate(cfg) == ec::invalid_config);
  cfg = {};
  cfg.backoff = 0.5;
  CHECK(validate(cfg) == ec::invalid_config);
  cfg = {};
  cfg.source_timeout = caf::timespan{0};
  CHECK(validate(cfg) == ec::invalid_config);
  cfg = {};
  cfg.retry_delay = -1s;
  CHECK(validate(cfg) == ec::invalid_config);
}

TEST_CASE_FIXTURE(fixture,
                  "staging: an invalid configuration stops the actor") {
  staging_config cfg;
  cfg.max_tries = 0;
  auto aut = spawn_staging(spawn_source(), cfg);
  auto res = get_now(aut, "m-12");
  CHECK(res.err);
  CHECK(script->requested.empty());
}
