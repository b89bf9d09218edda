// acme_attenuator: an example vendor driver, built out of tree against the installed SDK.
#include <labhost/driver.h>

#include <string>

namespace {

class acme_attenuator {
 public:
  explicit acme_attenuator(const labhost::params& p) : db_(p.get("attenuation_db", 0.0)) {}

  double attenuation() const { return db_; }
  void set_attenuation(double db) {
    if (db < 0 || db > 60) throw labhost::driver_error("attenuation must be 0 to 60 dB");
    db_ = db;
  }

 private:
  double db_;
};

}  // namespace

LABHOST_DRIVER(acme_attenuator, "acme_attenuator", "2.1.0", "ACME Photonics", "Variable optical attenuator",
    labhost::method(&acme_attenuator::attenuation, "attenuation", {}, "Attenuation in dB."),
    labhost::method(&acme_attenuator::set_attenuation, "set_attenuation", {"db"}, "Set 0-60 dB."))
