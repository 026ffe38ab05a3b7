#include "apps/commands.hpp"
#include "messages/error.hpp"
#include "model/npz.hpp"
#include "storage/model_store.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>

namespace rondo::apps {

namespace {

struct store_args {
  std::string db;
  std::string model_id;
  std::string file;
};

caf::expected<std::shared_ptr<storage::model_store>>
open_store(const std::string& path) {
  // Inspecting a store never creates one: a mistyped --db is an error.
  if (!std::filesystem::exists(std::filesystem::path{path} / "CURRENT"))
    return caf::make_error(ec::not_found,
                           "no database at " + path
                             + " (give the --db directory of a combiner or "
                               "controller)");
  auto db = storage::database::open(path);
  if (!db)
    return db.error();
  return storage::model_store::open(*db);
}

// Runs `fn(store)`; reports an error on stderr and sets exit_code.
template <class F>
void with_store(const store_args& a, int& exit_code, F fn) {
  auto store = open_store(a.db);
  caf::error err;
  if (!store)
    err = store.error();
  else
    err = fn(**store);
  if (err) {
    std::cerr << "error: " << render(err) << "\n";
    exit_code = 1;
  }
}

} // namespace

void add_store_command(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<store_args>();
  auto* store = app.add_subcommand("store", "Inspect and edit a local model "
                                            "store (the combiner's or "
                                            "controller's --db directory)");
  store->require_subcommand(1);
  store->add_option("--db", a->db, "Database directory")->required();

  store->add_subcommand("list", "List models: id, bytes, checksum")
    ->callback([a, &exit_code] {
      with_store(*a, exit_code, [](storage::model_store& s) -> caf::error {
        auto models = s.list();
        if (!models)
          return models.error();
        for (auto& m : *models)
          std::cout << m.model_id << "\t" << m.size_bytes << "\t" << std::hex
                    << std::setw(16) << std::setfill('0') << m.checksum
                    << std::dec << "\n";
        return caf::none;
      });
    });

  auto* import = store->add_subcommand("import", "Store FILE as MODEL_ID");
  import->add_option("model_id", a->model_id)->required();
  import->add_option("file", a->file)->required()->check(CLI::ExistingFile);
  import->callback([a, &exit_code] {
    with_store(*a, exit_code, [&a](storage::model_store& s) -> caf::error {
      // Only models go in: every member must read as a tensor (streamed,
      // so a large model is not held in memory).
      auto not_a_model = [&a](const caf::error& why) {
        return caf::make_error(ec::malformed_model, a->file
                                                      + " is not a model: "
                                                      + error_detail(why));
      };
      auto m = npz_reader::open_file(a->file);
      if (!m)
        return not_a_model(m.error());
      for (size_t i = 0; i < (*m)->spec().size(); ++i)
        if (auto err = (*m)->visit(i, [](const std::byte*, uint64_t,
                                         uint64_t) { return caf::error{}; }))
          return not_a_model(err);
      if ((*m)->spec().empty())
        return caf::make_error(ec::malformed_model,
                               a->file + " is not a model: it has no "
                                         "tensors");
      std::ifstream in{a->file, std::ios::binary};
      auto writer = s.begin_write(a->model_id);
      if (!writer)
        return writer.error();
      std::string buf(1 << 20, '\0');
      while (in) {
        in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
        if (auto err = (*writer)->write({buf.data(),
                                         static_cast<size_t>(in.gcount())}))
          return err;
      }
      if (in.bad())
        return caf::make_error(ec::storage_error, "cannot read " + a->file);
      auto info = (*writer)->commit();
      if (!info)
        return info.error();
      std::cout << info->model_id << "\t" << info->size_bytes << "\n";
      return caf::none;
    });
  });

  auto* exp = store->add_subcommand("export", "Write MODEL_ID to FILE");
  exp->add_option("model_id", a->model_id)->required();
  exp->add_option("file", a->file)->required();
  exp->callback([a, &exit_code] {
    with_store(*a, exit_code, [&a](storage::model_store& s) -> caf::error {
      auto reader = s.open_read(a->model_id);
      if (!reader)
        return reader.error();
      auto tmp = a->file + ".partial";
      std::ofstream out{tmp, std::ios::binary | std::ios::trunc};
      std::string chunk;
      for (;;) {
        auto more = reader->next(chunk);
        if (!more) {
          out.close();
          std::remove(tmp.c_str());
          return more.error();
        }
        if (!*more)
          break;
        out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
      }
      out.close();
      if (!out || std::rename(tmp.c_str(), a->file.c_str()) != 0)
        return caf::make_error(ec::storage_error, "cannot write " + a->file);
      std::cout << "wrote " << a->file << "\n";
      return caf::none;
    });
  });

  auto* verify = store->add_subcommand(
    "verify", "Read every model and check its checksum");
  verify->callback([a, &exit_code] {
    with_store(*a, exit_code, [](storage::model_store& s) -> caf::error {
      auto models = s.list();
      if (!models)
        return models.error();
      size_t bad = 0;
      for (auto& m : *models) {
        auto bytes = s.get(m.model_id);
        if (!bytes) {
          ++bad;
          std::cout << m.model_id << "\tFAILED\t" << render(bytes.error())
                    << "\n";
        } else {
          std::cout << m.model_id << "\tOK\n";
        }
      }
      if (bad > 0)
        return caf::make_error(ec::corrupt, std::to_string(bad)
                                              + " model(s) failed "
                                                "verification");
      return caf::none;
    });
  });

  auto* del = store->add_subcommand("delete", "Delete MODEL_ID");
  del->add_option("model_id", a->model_id)->required();
  del->callback([a, &exit_code] {
    with_store(*a, exit_code, [&a](storage::model_store& s) -> caf::error {
      if (auto err = s.remove(a->model_id))
        return err;
      std::cout << "deleted " << a->model_id << "\n";
      return caf::none;
    });
  });
}

} // namespace rondo::apps
