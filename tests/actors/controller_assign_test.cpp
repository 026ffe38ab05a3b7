// The controller's client assignment (FEDn's clients/add) as a state
// method: least-loaded alive combiner, preferred one honoured, dead ones
// never used, assignments durable.

#include "actors/controller.hpp"
#include "messages/error.hpp"
#include "storage/database.hpp"
#include "storage/state_store.hpp"
#include "tests/test_util.hpp"

#include <doctest/doctest.h>

#include <map>

using namespace rondo;

namespace {

struct assign_fixture {
  test::temp_dir dir;
  controller_state st;

  assign_fixture() {
    auto db = storage::database::open(dir.sub("db"));
    REQUIRE(db);
    auto state = storage::state_store::open(*db);
    REQUIRE(state);
    st.state = *state;
  }

  void known(const std::string& id, bool alive, uint16_t port) {
    combiner_status c;
    c.info = combiner_info{id, "host-" + id, "", "", port, false};
    c.alive = alive;
    st.known_combiners[id] = c;
  }

  std::string assign(const std::string& client,
                     const std::string& preferred = {}) {
    client_assignment_record rec;
    rec.client_id = client;
    rec.name = client;
    rec.combiner_preferred = preferred;
    auto got = st.assign(rec);
    REQUIRE(got);
    return got->info.combiner_id;
  }
};

} // namespace

TEST_CASE_FIXTURE(assign_fixture,
                  "assign: six clients over two combiners get three each") {
  known("A", true, 1);
  known("B", true, 2);
  std::map<std::string, int> per;
  for (int i = 0; i < 6; ++i)
    ++per[assign("c" + std::to_string(i))];
  CHECK(per["A"] == 3);
  CHECK(per["B"] == 3);
  // Assigning a client again does not count it twice.
  assign("c0");
  assign("c1");
  auto statuses = st.combiner_statuses();
  REQUIRE(statuses);
  REQUIRE(statuses->size() == 2);
  CHECK((*statuses)[0].clients_assigned + (*statuses)[1].clients_assigned
        == 6);
  auto stored = st.state->get<client_assignment_record>("c0");
  REQUIRE(stored);
  CHECK(stored->assigned_at > 0);
}

TEST_CASE_FIXTURE(assign_fixture,
                  "assign: a dead combiner is never chosen; preferred ones") {
  known("A", true, 1);
  known("B", false, 2);
  for (int i = 0; i < 4; ++i)
    CHECK(assign("c" + std::to_string(i)) == "A");
  known("C", true, 3);
  CHECK(assign("p", "C") == "C");
  client_assignment_record rec;
  rec.client_id = "q";
  rec.combiner_preferred = "B";
  auto dead = st.assign(rec);
  REQUIRE_FALSE(dead);
  CHECK(dead.error() == ec::not_found);
  CHECK(error_detail(dead.error()) == "combiner B not found or unavailable");
  known("A", false, 1);
  known("C", false, 3);
  rec.combiner_preferred.clear();
  auto none = st.assign(rec);
  REQUIRE_FALSE(none);
  CHECK(none.error() == ec::invalid_state);
  CHECK(error_detail(none.error()) == "no combiner available");
}

TEST_CASE_FIXTURE(assign_fixture,
                  "drain: a draining combiner gets no client until undrained") {
  known("A", true, 1);
  known("B", true, 2);
  auto drained = st.drain("A", true);
  REQUIRE(drained);
  CHECK(drained->draining);
  CHECK(drained->info.combiner_id == "A");
  for (int i = 0; i < 4; ++i)
    CHECK(assign("c" + std::to_string(i)) == "B");
  // A client that prefers the draining combiner is handed to another one.
  CHECK(assign("p", "A") == "B");
  auto statuses = st.combiner_statuses();
  REQUIRE(statuses);
  REQUIRE(statuses->size() == 2);
  CHECK((*statuses)[0].draining);
  CHECK((*statuses)[0].clients_assigned == 0);
  CHECK_FALSE((*statuses)[1].draining);
  CHECK((*statuses)[1].clients_assigned == 5);
  // With B gone, nothing is left to assign to, and the answer says why.
  known("B", false, 2);
  client_assignment_record rec;
  rec.client_id = "q";
  auto none = st.assign(rec);
  REQUIRE_FALSE(none);
  CHECK(none.error() == ec::invalid_state);
  CHECK(error_detail(none.error()) == "no combiner available (draining: A)");
  // Undrained, A is the least loaded and gets the next clients, preferred
  // or not.
  known("B", true, 2);
  auto undrained = st.drain("A", false);
  REQUIRE(undrained);
  CHECK_FALSE(undrained->draining);
  CHECK(undrained->clients_assigned == 0);
  CHECK(assign("n1") == "A");
  CHECK(assign("n2", "A") == "A");
  auto unknown = st.drain("Z", true);
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error() == ec::not_found);
  CHECK(error_detail(unknown.error()) == "no combiner Z");
}

TEST_CASE_FIXTURE(assign_fixture,
                  "drain: a combiner in the running round is released when "
                  "that round ends, each drain once") {
  known("A", true, 1);
  known("B", true, 2);
  known("C", false, 3);
  st.combiners["A"] = combiner_actor{};
  st.combiners["B"] = combiner_actor{};
  CHECK(st.serving_combiners().size() == 2);
  // A round runs over A and B.
  st.round_combiners = {"A", "B"};
  REQUIRE(st.drain("A", true));
  // A new round would not include A, but the running one keeps it.
  auto serving = st.serving_combiners();
  REQUIRE(serving.size() == 1);
  CHECK(serving.count("B") == 1);
  CHECK(st.take_releasable().empty());
  // The round ends: A is released, once.
  st.round_combiners.clear();
  auto released = st.take_releasable();
  REQUIRE(released.size() == 1);
  CHECK(released[0].info.combiner_id == "A");
  CHECK(st.take_releasable().empty());
  // A lost combiner that drains is not released (nothing to tell); an idle
  // one is released at once.
  REQUIRE(st.drain("C", true));
  CHECK(st.take_releasable().empty());
  REQUIRE(st.drain("B", true));
  released = st.take_releasable();
  REQUIRE(released.size() == 1);
  CHECK(released[0].info.combiner_id == "B");
  CHECK(st.serving_combiners().empty());
  // Undrained and drained again: released again.
  REQUIRE(st.drain("B", false));
  CHECK(st.serving_combiners().count("B") == 1);
  REQUIRE(st.drain("B", true));
  released = st.take_releasable();
  REQUIRE(released.size() == 1);
  CHECK(released[0].info.combiner_id == "B");
}

TEST_CASE_FIXTURE(assign_fixture,
                  "assign: a combiner that joins later gets the next clients") {
  known("A", true, 1);
  known("B", true, 2);
  for (int i = 0; i < 4; ++i)
    assign("c" + std::to_string(i));
  // Scale-out: C joins with no clients and is the least loaded until it
  // has as many as the others.
  known("C", true, 3);
  CHECK(assign("n1") == "C");
  CHECK(assign("n2") == "C");
  std::map<std::string, int> per;
  for (int i = 3; i < 6; ++i)
    ++per[assign("n" + std::to_string(i))];
  CHECK(per["A"] == 1);
  CHECK(per["B"] == 1);
  CHECK(per["C"] == 1);
}
