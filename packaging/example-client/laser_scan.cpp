// laser_scan: steps a laser through wavelengths and reads each back, the way a lab's own
// program uses an instrument that labhost serves. Exits 1 with the typed error's name when a
// request fails.
#include <labhost/client.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: laser_scan lab://HOST:PORT/SERVICE\n";
    return 2;
  }
  try {
    auto laser = labhost::service_proxy::connect(argv[1]);
    for (double nm : {1550.0, 1550.5, 1551.0}) {
      laser.call("set_wavelength", nm);
      std::cout << "wavelength " << laser.call("wavelength").as_float() << "\n";
    }
    try {
      laser.call("set_wavelength", "red");
    } catch (const labhost::remote_error& e) {
      std::cout << "refused: " << e.name() << "\n";  // a typed error, and the session goes on
    }
    std::cout << "daemon " << laser.connection().daemon_name() << "\n";
  } catch (const labhost::remote_error& e) {
    std::cerr << "laser_scan: " << e.name() << ": " << e.message() << "\n";
    return 1;
  }
  return 0;
}
