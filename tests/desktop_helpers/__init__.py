"""Real desktop pieces for the desktop tests: a private dbus-daemon, Xvfb and a tray host, a test
notification/screensaver server, each started on free addresses and stopped afterwards."""
