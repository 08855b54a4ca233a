// examples/cli.hpp — what every example program shares: CLI11 parsing with the
// exit codes we promise (0 for --help, 2 for a bad flag or value), and a
// top-level guard that turns exceptions into one clear line and exit code 1.
#pragma once

#include <kitnn/version.hpp>

#include <CLI/CLI.hpp>

#include <exception>
#include <functional>
#include <iostream>

namespace kitnn_examples {

// Parses argv; returns -1 to go on, else the exit code to return from main. Every
// program gets --version here: "<program> (kitnn <KITNN_VERSION_STRING>)", exit 0.
inline int parse(CLI::App& app, int argc, char** argv) {
    std::string name = argc > 0 ? argv[0] : "kitnn";
    name = name.substr(name.find_last_of('/') + 1);
    app.set_version_flag("--version", name + " (kitnn " KITNN_VERSION_STRING ")",
                         "Print the program's name and kitnn's version, and exit");
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::cerr << app.get_name() << ": " << e.what() << "\nRun with --help for the options.\n";
        return 2;
    }
    return -1;
}

// Runs body(); any exception becomes "name: error: message" and exit code 1.
inline int guarded(const char* name, const std::function<int()>& body) {
    try {
        return body();
    } catch (const std::exception& e) {
        std::cerr << name << ": error: " << e.what() << "\n";
        return 1;
    }
}

}  // namespace kitnn_examples
