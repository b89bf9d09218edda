// secret_file.h: the one reader of secret files: host.json's auth.secret_file and
// admin_secret_file, $LABHOST_SECRET_FILE, labctl --secret-file and --admin-secret-file
// (tests/vectors/secrets.json; the Python client follows the same rule).
#ifndef LABHOST_PROTOCOL_SECRET_FILE_H
#define LABHOST_PROTOCOL_SECRET_FILE_H

#include <filesystem>
#include <string>

#include "labhost/errors.h"

namespace labhost::protocol {

/// The secret in `file`: its first line without the blanks (space, tab, carriage return)
/// around it. Errors (auth_failed): the file cannot be read, or its first line is blank.
/// Whether others may read the file is the caller's concern (the daemon refuses that).
result<std::string> read_secret_file(const std::filesystem::path& file);

}  // namespace labhost::protocol

#endif  // LABHOST_PROTOCOL_SECRET_FILE_H
