// sim_laser: a simulated tunable laser (1500-1630 nm).
// Parameters: wavelength_nm (default 1550), power_mw (default 1), max_power_mw (default 100).
#include <labhost/driver.h>

#include <string>

namespace {

class sim_laser {
 public:
  static constexpr double min_nm = 1500.0;
  static constexpr double max_nm = 1630.0;

  explicit sim_laser(const labhost::params& p)
      : wavelength_nm_(p.get("wavelength_nm", 1550.0)),
        power_mw_(p.get("power_mw", 1.0)),
        max_power_mw_(p.get("max_power_mw", 100.0)) {
    check_wavelength(wavelength_nm_);
  }

  double wavelength() const { return wavelength_nm_; }
  void set_wavelength(double nm) {
    check_wavelength(nm);
    wavelength_nm_ = nm;
  }
  double power() const { return power_mw_; }
  void set_power(double mw) {
    if (mw < 0 || mw > max_power_mw_)
      throw labhost::driver_error("power " + std::to_string(mw) + " mW is outside 0-" +
                                  std::to_string(max_power_mw_) + " mW");
    power_mw_ = mw;
  }
  void on() { on_ = true; }
  void off() { on_ = false; }
  bool is_on() const { return on_; }

 private:
  static void check_wavelength(double nm) {
    if (!(nm >= min_nm && nm <= max_nm))
      throw labhost::driver_error("wavelength " + std::to_string(nm) +
                                  " nm is outside the tuning range 1500-1630 nm");
  }

  double wavelength_nm_;
  double power_mw_;
  double max_power_mw_;
  bool on_ = false;
};

}  // namespace

LABHOST_DRIVER(sim_laser, "sim_laser", "1.0.0", "labhost", "Simulated tunable laser, 1500-1630 nm",
    labhost::method(&sim_laser::wavelength, "wavelength", {}, "Current wavelength in nm."),
    labhost::method(&sim_laser::set_wavelength, "set_wavelength", {"nm"},
                    "Tune to nm (1500-1630); outside the range is a driver_error."),
    labhost::method(&sim_laser::power, "power", {}, "Output power setpoint in mW."),
    labhost::method(&sim_laser::set_power, "set_power", {"mw"}, "Set the output power in mW."),
    labhost::method(&sim_laser::on, "on", {}, "Turn the emission on."),
    labhost::method(&sim_laser::off, "off", {}, "Turn the emission off."),
    labhost::method(&sim_laser::is_on, "is_on", {}, "True while emitting."))
