#include "common/security/curve.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace segue {
namespace {

namespace fs = std::filesystem;

bool ValidZ85Key(const std::string& k) { return k.size() == 40; }

// The value of `name = "..."` in a zcert file, or empty.
std::string Field(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const size_t at = line.find(name);
    if (at == std::string::npos || line.substr(0, at).find_first_not_of(" \t") != std::string::npos)
      continue;
    const size_t q1 = line.find('"', at), q2 = line.rfind('"');
    if (q1 != std::string::npos && q2 > q1) return line.substr(q1 + 1, q2 - q1 - 1);
  }
  return "";
}

}  // namespace

Result<CurveKeys> GenerateCurveKeys() {
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0)
    return Result<CurveKeys>::Error("this ZeroMQ has no CURVE support");
  return CurveKeys{pub, sec};
}

Result<CurveKeys> LoadCurveKeys(const std::string& path, bool need_secret) {
  using R = Result<CurveKeys>;
  std::ifstream in(path);
  if (!in) return R::Error("cannot read key file '" + path + "'");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  CurveKeys k{Field(text, "public-key"), Field(text, "secret-key")};
  if (!ValidZ85Key(k.public_key))
    return R::Error("'" + path + "': no public-key = \"...\" of 40 Z85 characters");
  if (need_secret && !ValidZ85Key(k.secret_key))
    return R::Error("'" + path + "': no secret-key (give the .key file, not the .pub)");
  struct stat st {};
  if (!k.secret_key.empty() && stat(path.c_str(), &st) == 0 && (st.st_mode & 077))
    return R::Error("'" + path + "' holds a secret key and others can read it (chmod 600 it)");
  return k;
}

Status WriteCurveKeys(const CurveKeys& keys, const std::string& secret_path,
                      const std::string& public_path) {
  auto write = [](const std::string& path, const std::string& body, fs::perms perms) -> Status {
    const std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      if (!out) return Status::Error("cannot write '" + path + "'");
    }
    std::error_code ec;
    fs::permissions(tmp, perms, ec);  // before the secret goes in
    std::ofstream out(tmp, std::ios::trunc);
    out << body;
    out.close();
    if (!out) return Status::Error("cannot write '" + path + "'");
    fs::rename(tmp, path, ec);
    return ec ? Status::Error("cannot write '" + path + "': " + ec.message()) : Status::Ok();
  };
  const std::string head = "#   segue CURVE key (zcert format)\nmetadata\ncurve\n";
  Status s = write(secret_path,
                   head + "    public-key = \"" + keys.public_key + "\"\n    secret-key = \"" +
                       keys.secret_key + "\"\n",
                   fs::perms::owner_read | fs::perms::owner_write);
  if (!s.ok()) return s;
  return write(public_path, head + "    public-key = \"" + keys.public_key + "\"\n",
               fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                   fs::perms::others_read);
}

Result<std::vector<std::string>> LoadAllowedKeys(const std::string& path) {
  using R = Result<std::vector<std::string>>;
  std::vector<std::string> files;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (const auto& e : fs::directory_iterator(path, ec)) {
      if (e.path().extension() == ".pub" || e.path().extension() == ".key")
        files.push_back(e.path().string());
    }
  } else {
    files.push_back(path);
  }
  std::vector<std::string> keys;
  for (const auto& f : files) {
    std::ifstream in(f);
    if (!in) return R::Error("cannot read key file '" + f + "'");
    std::string text((std::istreambuf_iterator<char>(in)), {});
    const std::string k = Field(text, "public-key");
    if (!ValidZ85Key(k)) return R::Error("'" + f + "': no public-key = \"...\"");
    keys.push_back(k);
  }
  if (keys.empty()) return R::Error("'" + path + "' holds no key files (*.pub)");
  return keys;
}

void MakeCurveServer(zmq::socket_t& socket, const CurveKeys& own) {
  socket.set(zmq::sockopt::curve_server, true);
  socket.set(zmq::sockopt::curve_secretkey, own.secret_key);
  socket.set(zmq::sockopt::zap_domain, "segue");
}

Status MakeCurveClient(zmq::socket_t& socket, const std::string& server_public_key, CurveKeys own) {
  if (own.secret_key.empty()) {
    auto fresh = GenerateCurveKeys();
    if (!fresh.ok()) return fresh.status();
    own = *fresh;
  }
  socket.set(zmq::sockopt::curve_serverkey, server_public_key);
  socket.set(zmq::sockopt::curve_publickey, own.public_key);
  socket.set(zmq::sockopt::curve_secretkey, own.secret_key);
  return Status::Ok();
}

Status ApplyClientCurveFromEnvironment(zmq::socket_t& socket) {
  const char* server = getenv("SEGUE_CURVE_SERVER_KEY");
  if (!server || !*server) return Status::Ok();
  auto server_keys = LoadCurveKeys(server, false);
  if (!server_keys.ok()) return Status::Error("SEGUE_CURVE_SERVER_KEY: " + server_keys.message());
  CurveKeys own;
  const char* mine = getenv("SEGUE_CURVE_KEY");
  if (mine && *mine) {
    auto k = LoadCurveKeys(mine, true);
    if (!k.ok()) return Status::Error("SEGUE_CURVE_KEY: " + k.message());
    own = *k;
  }
  return MakeCurveClient(socket, server_keys->public_key, own);
}

}  // namespace segue
