// CURVE keys: who may talk to the coordinator, and that nobody else reads what they say.
//
// The coordinator has a long-term keypair; workers and clients know its public key, so they
// talk only to the real coordinator and their traffic is encrypted (ZeroMQ CURVE). With an
// allow list of client public keys the coordinator also refuses every peer not on it (ZAP).
// Key files use czmq's zcert text format, so zcert tools read them:
//
//   curve
//       public-key = "Z85..."
//       secret-key = "Z85..."     (only in the secret file, which is written mode 0600)
#pragma once

#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/status/status.h"

namespace segue {

struct CurveKeys {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85, 40 characters; empty in a public-only file
};

Result<CurveKeys> GenerateCurveKeys();
// Reads a key file; `need_secret`: a file without a secret key is an error.
Result<CurveKeys> LoadCurveKeys(const std::string& path, bool need_secret);
// Writes `secret_path` with both keys (mode 0600) and `public_path` with the public key alone.
Status WriteCurveKeys(const CurveKeys& keys, const std::string& secret_path,
                      const std::string& public_path);
// Public keys of the allowed clients: every key file in a folder, or one file.
Result<std::vector<std::string>> LoadAllowedKeys(const std::string& path);

// The coordinator's side of a socket.
void MakeCurveServer(zmq::socket_t& socket, const CurveKeys& own);
// A worker's or client's side: `own` may be empty (then a fresh keypair is made).
Status MakeCurveClient(zmq::socket_t& socket, const std::string& server_public_key,
                       CurveKeys own = {});

// What workers and clients use when SEGUE_CURVE_SERVER_KEY (the coordinator's public key file)
// and SEGUE_CURVE_KEY (their own key file, optional) are set; nothing when they are not.
Status ApplyClientCurveFromEnvironment(zmq::socket_t& socket);

}  // namespace segue
