// kitnn_serve — draw a digit in the browser and see, as you draw, what the network says.
//
//   kitnn_serve --model runs/lenet5/best.kitnn              then open http://127.0.0.1:8080/
//   kitnn_serve --model best.kitnn --port 0 --collect my_digits/
//
// One page (examples/serve/index.html, compiled into the program: no file is served from
// disk and the page fetches nothing from anywhere else) with a canvas to draw on, the
// live prediction, the top-3 probabilities, the 28x28 image the network saw, a switch
// between MNIST-style preprocessing and the raw drawing, and "save as a labelled
// example" (a download, or with --collect DIR a PNG + labels.csv row on the server, the
// folder format of `mnist_apply --labels`).
//
// The HTTP API (JSON answers; errors are JSON {"error": "..."} with a 4xx status):
//   GET  /                the page
//   GET  /api/model       the model: name, classes, input size, parameters, Keras summary
//   POST /api/classify    body: an image file (Content-Type image/png, image/jpeg, ...;
//                         anything load_grey reads), or raw 8-bit greyscale pixels with
//                         Content-Type application/octet-stream and ?width=W&height=H.
//                         ?preprocess=mnist (default: like mnist_apply) or raw (like
//                         mnist_apply --raw --resize); ?top=K (default 3).
//                         -> prediction, probability, top, probabilities, the image the
//                         network saw (pixels and a base64 PNG), the model's name.
//   POST /api/collect?label=D   (with --collect) the same bodies: stored as DIR/<name>.png
//                         and a row of DIR/labels.csv, both written atomically.
//
// Classification is exactly mnist_apply's (examples/classify.hpp is shared): the same
// image loader with its limits (io/image.hpp), the same preprocessing, the same ranking.
// Safety: the server binds to 127.0.0.1 unless --host says otherwise; request bodies are
// limited (--max-body, default 1 MiB: 413 above); images keep load_grey's checks and its
// pixel limit; no file name or path comes from a request. Each request is classified on
// a model copy (model/clone.hpp) taken from a pool of --threads copies, never on a
// shared one. SIGINT/SIGTERM stop it cleanly: requests in progress are answered first.
#include "classify.hpp"
#include "cli.hpp"

#include "serve_page.hpp"  // generated from examples/serve/index.html: kitnn_serve_page

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <kitnn/io/atomic_file.hpp>
#include <kitnn/model/clone.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <pthread.h>
#include <sstream>
#include <thread>

using namespace kitnn;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A request that cannot be served: its HTTP status and a message for the client.
struct HttpError : std::runtime_error {
    int status;
    HttpError(int s, const std::string& what) : std::runtime_error(what), status(s) {}
};

// --threads copies of the model (clone_model: independent, bit-identical). A request
// takes one for the time of its predict and gives it back; when all are in use it waits.
// predict writes into buffers the model owns, so one copy is never used by two threads.
class ModelPool {
public:
    ModelPool(Sequential<float>& prototype, int copies) {
        for (int i = 0; i < copies; ++i) free_.push_back(std::make_unique<Sequential<float>>(clone_model(prototype)));
    }
    class Lease {
    public:
        Lease(ModelPool& pool, std::unique_ptr<Sequential<float>> m) : pool_(pool), model_(std::move(m)) {}
        ~Lease() { pool_.give_back(std::move(model_)); }
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;
        Sequential<float>& model() { return *model_; }

    private:
        ModelPool& pool_;
        std::unique_ptr<Sequential<float>> model_;
    };
    Lease take() {
        std::unique_lock<std::mutex> lock(mutex_);
        available_.wait(lock, [&] { return !free_.empty(); });
        std::unique_ptr<Sequential<float>> m = std::move(free_.back());
        free_.pop_back();
        return Lease(*this, std::move(m));
    }

private:
    void give_back(std::unique_ptr<Sequential<float>> m) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            free_.push_back(std::move(m));
        }
        available_.notify_one();
    }
    std::mutex mutex_;
    std::condition_variable available_;
    std::vector<std::unique_ptr<Sequential<float>>> free_;
};

std::string base64(const std::vector<char>& bytes) {
    static const char* digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    for (std::size_t i = 0; i < bytes.size(); i += 3) {
        const unsigned a = static_cast<unsigned char>(bytes[i]);
        const unsigned b = i + 1 < bytes.size() ? static_cast<unsigned char>(bytes[i + 1]) : 0u;
        const unsigned c = i + 2 < bytes.size() ? static_cast<unsigned char>(bytes[i + 2]) : 0u;
        const unsigned v = (a << 16) | (b << 8) | c;
        out += digits[(v >> 18) & 63];
        out += digits[(v >> 12) & 63];
        out += i + 1 < bytes.size() ? digits[(v >> 6) & 63] : '=';
        out += i + 2 < bytes.size() ? digits[v & 63] : '=';
    }
    return out;
}

// An 8-bit greyscale PNG in memory (stb's encoder, as io::write_png uses).
std::vector<char> png_bytes(const io::GreyImage& im) {
    const std::vector<std::uint8_t> px = io::to_bytes(im);
    std::vector<char> png;
    auto append = [](void* ctx, void* data, int size) {
        auto* out = static_cast<std::vector<char>*>(ctx);
        out->insert(out->end(), static_cast<char*>(data), static_cast<char*>(data) + size);
    };
    if (!stbi_write_png_to_func(append, &png, im.width, im.height, 1, px.data(), im.width))
        throw std::runtime_error("cannot encode the PNG");
    return png;
}

// A query parameter that must be a whole number in [lo, hi]; `fallback` when absent.
int int_param(const httplib::Request& req, const std::string& key, int fallback, int lo, int hi) {
    if (!req.has_param(key.c_str())) return fallback;
    const std::string v = req.get_param_value(key.c_str());
    const bool digits = !v.empty() && v.size() <= 9 && v.find_first_not_of("0123456789") == std::string::npos;
    const long n = digits ? std::stol(v) : -1;
    if (!digits || n < lo || n > hi)
        throw HttpError(400, "?" + key + "=" + v.substr(0, 40) + ": expected a whole number from " +
                                 std::to_string(lo) + " to " + std::to_string(hi));
    return int(n);
}

// The request's image: an image file (image/*), or raw 8-bit grey pixels
// (application/octet-stream with ?width=W&height=H; without them, an image file too).
io::GreyImage request_image(const httplib::Request& req) {
    std::string type = req.get_header_value("Content-Type");
    type = type.substr(0, type.find(';'));
    for (char& c : type) c = char(std::tolower(static_cast<unsigned char>(c)));
    while (!type.empty() && type.back() == ' ') type.pop_back();
    const bool raw_grey = type == "application/octet-stream" && (req.has_param("width") || req.has_param("height"));
    if (type.rfind("image/", 0) != 0 && type != "application/octet-stream")
        throw HttpError(415, "Content-Type " + (type.empty() ? std::string("(none)") : "'" + type.substr(0, 60) + "'") +
                                 ": send an image file (image/png, image/jpeg, ...) or raw 8-bit greyscale pixels "
                                 "(application/octet-stream with ?width=W&height=H)");
    if (req.body.empty()) throw HttpError(400, "empty request body: send an image");
    if (!raw_grey) {
        try {
            return io::decode_grey(req.body.data(), req.body.size(), "request body");
        } catch (const io::ImageError& e) {
            throw HttpError(400, e.what());
        }
    }
    // Raw pixels: the size must be given and match the body; load_grey's pixel limit holds too.
    const int w = int_param(req, "width", 0, 1, 1 << 16), h = int_param(req, "height", 0, 1, 1 << 16);
    if (w == 0 || h == 0) throw HttpError(400, "raw greyscale pixels need both ?width=W and ?height=H");
    if (static_cast<long long>(w) * h > io::kMaxImagePixels)
        throw HttpError(400, "request body: " + std::to_string(w) + "x" + std::to_string(h) +
                                 " pixels, more than the " + std::to_string(io::kMaxImagePixels) + " accepted");
    if (req.body.size() != std::size_t(w) * std::size_t(h))
        throw HttpError(400, "request body: " + std::to_string(req.body.size()) + " bytes, but " +
                                 std::to_string(w) + "x" + std::to_string(h) + " 8-bit pixels are " +
                                 std::to_string(std::size_t(w) * std::size_t(h)) + " bytes");
    io::GreyImage im;
    im.width = w, im.height = h;
    im.pixels.resize(req.body.size());
    // Exactly what load_grey gives for an 8-bit grey PNG of these bytes (byte / 255).
    for (std::size_t i = 0; i < im.pixels.size(); ++i) im.pixels[i] = static_cast<unsigned char>(req.body[i]) / 255.0f;
    return im;
}

// The reason phrase of the statuses httplib answers on its own (its table is not in the
// header of Debian's split build).
std::string status_text(int status) {
    switch (status) {
        case 400: return "bad request";
        case 404: return "not found";
        case 405: return "method not allowed";
        case 408: return "request timeout";
        case 413: return "payload too large";
        case 414: return "URI too long";
        case 415: return "unsupported media type";
        case 411: return "length required";
        case 416: return "range not satisfiable";
        case 431: return "request header fields too large";
        case 500: return "internal server error";
        case 503: return "service unavailable";
        default: return "HTTP status " + std::to_string(status);
    }
}

void send_json(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(body.dump(), "application/json");
}

// --collect DIR: labelled examples as DIR/digit_<label>_<n>.png and DIR/labels.csv
// ("file,label" with a header line: what mnist_apply --labels reads). Every write is
// atomic (io/atomic_file.hpp); labels.csv is rewritten whole, after its PNG is in place,
// so a crash leaves at worst a PNG without a row, never a row without its PNG or half a
// file. File names are made here, never taken from the request.
class Collector {
public:
    explicit Collector(const std::string& dir) : dir_(dir) {
        std::error_code ec;
        fs::create_directories(dir_, ec);
        if (ec || !fs::is_directory(dir_)) throw std::runtime_error(dir + ": cannot create folder: " + ec.message());
        const fs::path csv = fs::path(dir_) / "labels.csv";
        if (fs::exists(csv)) {
            std::ifstream in(csv, std::ios::binary);
            std::ostringstream s;
            s << in.rdbuf();
            csv_ = s.str();
            if (!in.good() && !in.eof()) throw std::runtime_error(csv.string() + ": cannot read");
            if (!csv_.empty() && csv_.back() != '\n') csv_ += '\n';
            for (std::size_t p = 0; (p = csv_.find('\n', p)) != std::string::npos; ++p) ++rows_;
            rows_ = rows_ > 0 ? rows_ - 1 : 0;  // the header
        }
        if (csv_.empty()) csv_ = "file,label\n";
    }
    // Stores `im` with `label`; returns the file name and the number of rows.
    std::pair<std::string, int> add(const io::GreyImage& im, int label) {
        std::lock_guard<std::mutex> lock(mutex_);
        std::string name;
        for (int n = next_;; ++n) {
            char buf[64];
            std::snprintf(buf, sizeof buf, "digit_%d_%04d.png", label, n);
            if (!fs::exists(fs::path(dir_) / buf)) {
                name = buf;
                next_ = n + 1;
                break;
            }
        }
        io::write_png_grey((fs::path(dir_) / name).string(), im);
        const std::string updated = csv_ + name + "," + std::to_string(label) + "\n";
        write_file_atomic((fs::path(dir_) / "labels.csv").string(), updated);
        csv_ = updated;
        return {name, ++rows_};
    }
    const std::string& dir() const { return dir_; }

private:
    std::mutex mutex_;
    std::string dir_, csv_;
    int rows_ = 0, next_ = 1;
};

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"kitnn_serve: a local web page to draw digits on and see, as you draw, what a kitnn model "
                 "predicts, the 28x28 image it saw and its top 3; with a JSON API (POST /api/classify, "
                 "GET /api/model). Classifies exactly as mnist_apply does."};
    std::string model_path, host = "127.0.0.1", collect_dir, dataset;
    int port = 8080, threads = std::max(1, int(std::thread::hardware_concurrency()));
    int connections = 16;
    std::size_t max_body = 1 << 20;
    app.add_option("--model", model_path, "model file written by mnist_train (best.kitnn)")->required();
    app.add_option("--host", host, "address to listen on; the default serves this machine only (0.0.0.0 "
                                   "would open it to the network: there is no authentication)")
        ->capture_default_str();
    app.add_option("--port", port, "TCP port; 0 picks a free one (the URL printed at start names it)")
        ->check(CLI::Range(0, 65535))
        ->capture_default_str();
    app.add_option("--threads", threads, "requests classified at once, each on its own copy of the model "
                                         "(default: the number of cores)")
        ->check(CLI::Range(1, 64));
    app.add_option("--connections", connections, "HTTP worker threads (open connections served at once; "
                                                 "a browser keeps up to 6 open)")
        ->check(CLI::Range(1, 256))
        ->capture_default_str();
    app.add_option("--max-body", max_body, "largest request body in bytes (413 above)")
        ->check(CLI::Range(std::size_t(1024), std::size_t(64) << 20))
        ->capture_default_str();
    app.add_option("--collect", collect_dir, "store the page's \"save as a labelled example\" drawings in this "
                                             "folder (PNG + labels.csv, for mnist_apply --labels); without it "
                                             "the page downloads them")
        ->check([](const std::string& v) { return v.empty() ? std::string("empty folder name") : std::string(); });
    app.add_option("--dataset", dataset, "class names: mnist or fashion (default: the model file's, as mnist_apply)")
        ->check(CLI::IsMember(data::dataset_names()));
    if (int rc = kitnn_examples::parse(app, argc, argv); rc >= 0) return rc;

    // SIGINT/SIGTERM are blocked in every thread (the mask is inherited by the threads
    // started below: httplib's workers, OpenMP's) and taken by one thread with sigwait,
    // which then stops the server: no work in a signal handler, where httplib's stop()
    // is not async-signal-safe.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    return kitnn_examples::guarded("kitnn_serve", [&] {
        Metadata meta;
        Sequential<float> model = load_model<float>(model_path, &meta);
        const kitnn_examples::ClassifySetup setup =
            kitnn_examples::classify_setup(model, meta, dataset, model_path, /*raw=*/false);
        const std::string file_name = fs::path(model_path).filename().string();
        const std::string name = meta.count("model") && !meta["model"].empty() ? meta["model"]
                                                                               : fs::path(model_path).stem().string();
        ModelPool pool(model, threads);
        std::unique_ptr<Collector> collector;
        if (!collect_dir.empty()) collector = std::make_unique<Collector>(collect_dir);

        // GET /api/model never changes: made once.
        json info;
        info["name"] = name;
        info["file"] = file_name;
        info["dataset"] = setup.dataset;
        info["classes"] = setup.names;
        info["input"] = {{"channels", 1}, {"height", setup.H}, {"width", setup.W}};
        info["parameters"] = model.param_count();
        info["summary"] = model.summary(name);
        info["metadata"] = meta;
        info["collect"] = bool(collector);
        info["threads"] = threads;
        info["max_body"] = max_body;
        const std::string info_text = info.dump();

        std::atomic<long> served{0}, refused{0};
        httplib::Server svr;
        svr.new_task_queue = [&] { return new httplib::ThreadPool(std::size_t(connections)); };
        svr.set_payload_max_length(max_body);
        svr.set_read_timeout(5, 0);    // a client that stops sending mid-request is dropped
        svr.set_write_timeout(5, 0);
        svr.set_keep_alive_timeout(2);  // idle keep-alive connections give their worker back soon
        svr.set_keep_alive_max_count(1000);
        svr.set_tcp_nodelay(true);  // small answers go out at once, not after a delayed ACK
        // "Expect: 100-continue" with a Content-Length over the limit: refuse before the
        // client sends the body (httplib's default says 100 and refuses it afterwards).
        svr.set_expect_100_continue_handler([&](const httplib::Request& req, httplib::Response& res) {
            const std::string length = req.get_header_value("Content-Length");
            if (!length.empty() && length.find_first_not_of("0123456789") == std::string::npos &&
                (length.size() > 18 || std::stoull(length) > max_body)) {
                res.status = 413;
                return 413;
            }
            return 100;
        });
        // httplib 0.11 limits a body sent with Content-Length (413 above --max-body), not a
        // chunked one, which it would collect in memory without bound: such a request is
        // refused before its body is read (browsers and curl send a Content-Length). httplib
        // then reads what the client still sends on that connection as a next request and
        // refuses that too (4xx): the connection is lost for that client, nothing else.
        svr.set_pre_routing_handler([&](const httplib::Request& req, httplib::Response& res) {
            if (!req.has_header("Transfer-Encoding")) return httplib::Server::HandlerResponse::Unhandled;
            res.set_header("Connection", "close");
            send_json(res, 411, {{"error", "Transfer-Encoding '" + req.get_header_value("Transfer-Encoding").substr(0, 40) +
                                               "' is not accepted: send the body with a Content-Length (at most " +
                                               std::to_string(max_body) + " bytes)"}});
            return httplib::Server::HandlerResponse::Handled;
        });
        svr.set_default_headers({{"X-Content-Type-Options", "nosniff"}, {"Cache-Control", "no-store"}});

        // Every error is JSON: ours carry a body already; httplib's own (404 for an unknown
        // path, 413 for a body over --max-body, 400 for a malformed request) get one here.
        svr.set_error_handler(httplib::Server::HandlerWithResponse([&](const httplib::Request& req,
                                                                      httplib::Response& res) {
            ++refused;
            if (res.body.empty()) {
                std::string msg = status_text(res.status);
                if (res.status == 404) msg = "no such page: " + req.path.substr(0, 200) + " (try / or /api/model)";
                if (res.status == 413) msg = "request body too large: at most " + std::to_string(max_body) + " bytes";
                res.set_content(json{{"error", msg}}.dump(), "application/json");
            }
            std::cerr << "kitnn_serve: " << res.status << " " << req.method << " " << req.path.substr(0, 200) << "\n";
            return httplib::Server::HandlerResponse::Handled;
        }));
        svr.set_exception_handler([&](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
            std::string what = "internal error";
            try {
                if (ep) std::rethrow_exception(ep);
            } catch (const std::exception& e) {
                what += std::string(": ") + e.what();
            } catch (...) {
            }
            send_json(res, 500, {{"error", what}});
        });

        // Wraps a handler: HttpError -> its status, any other exception -> 500, as JSON.
        auto guarded = [](auto handler) {
            return [handler](const httplib::Request& req, httplib::Response& res) {
                try {
                    handler(req, res);
                } catch (const HttpError& e) {
                    send_json(res, e.status, {{"error", e.what()}});
                } catch (const std::exception& e) {
                    send_json(res, 500, {{"error", std::string("internal error: ") + e.what()}});
                }
            };
        };

        svr.Get("/", [&](const httplib::Request&, httplib::Response& res) {
            // The page may talk to this server only: a browser enforces it even if a
            // future edit of the page tried to load anything from elsewhere.
            res.set_header("Content-Security-Policy",
                           "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                           "img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'");
            res.set_content(kitnn_serve_page, "text/html; charset=utf-8");
        });
        svr.Get("/api/model", [&](const httplib::Request&, httplib::Response& res) {
            res.set_content(info_text, "application/json");
        });

        svr.Post("/api/classify", guarded([&](const httplib::Request& req, httplib::Response& res) {
            const auto t0 = std::chrono::steady_clock::now();
            const std::string mode = req.has_param("preprocess") ? req.get_param_value("preprocess") : "mnist";
            if (mode != "mnist" && mode != "raw")
                throw HttpError(400, "?preprocess=" + mode.substr(0, 40) + ": expected mnist or raw");
            const int top = int_param(req, "top", std::min(3, setup.K), 1, setup.K);
            const io::GreyImage im = request_image(req);
            io::GreyImage x;
            try {  // raw: mnist_apply --raw --resize (the whole drawing scaled to the input size)
                x = kitnn_examples::network_input(im, setup, mode == "raw", /*resize=*/true, "request body");
            } catch (const data::PreprocessError& e) {
                throw HttpError(422, e.what());  // a blank drawing: nothing to classify
            }
            Tensor<float> p;
            {
                ModelPool::Lease lease = pool.take();
                set_threads(1);  // one image: the other cores serve the other requests
                p = lease.model().predict(kitnn_examples::as_batch(x));
            }
            const std::vector<int> order = kitnn_examples::rank_classes(p);
            json out;
            out["model"] = name;
            out["preprocess"] = mode;
            out["prediction"] = order[0];
            out["class"] = setup.names[std::size_t(order[0])];
            out["probability"] = p.data()[order[0]];
            out["top"] = json::array();
            for (int k = 0; k < top; ++k) {
                const int c = order[std::size_t(k)];
                out["top"].push_back({{"digit", c}, {"class", setup.names[std::size_t(c)]}, {"probability", p.data()[c]}});
            }
            out["probabilities"] = std::vector<float>(p.data(), p.data() + p.size());
            out["input"] = {{"width", im.width}, {"height", im.height}};
            out["image"] = {{"width", x.width},
                            {"height", x.height},
                            {"pixels", io::to_bytes(x)},
                            {"png", base64(png_bytes(x))}};
            out["ms"] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            ++served;
            send_json(res, 200, out);
        }));

        svr.Post("/api/collect", guarded([&](const httplib::Request& req, httplib::Response& res) {
            if (!collector)
                throw HttpError(404, "this server stores no examples: start it with --collect DIR (the page "
                                     "then downloads them instead)");
            if (!req.has_param("label")) throw HttpError(400, "?label=D missing: the class of the drawing");
            const int label = int_param(req, "label", 0, 0, std::min(9, setup.K - 1));
            const io::GreyImage im = request_image(req);
            const auto [file, rows] = collector->add(im, label);
            std::cerr << "kitnn_serve: saved " << (fs::path(collector->dir()) / file).string() << " (label " << label
                      << ")\n";
            send_json(res, 200, {{"file", file}, {"label", label}, {"count", rows}});
        }));

        // The other methods on our paths: 405 with the allowed one (not a misleading 404).
        auto not_allowed = [](const char* allow) {
            return [allow](const httplib::Request& req, httplib::Response& res) {
                res.set_header("Allow", allow);
                send_json(res, 405, {{"error", req.method + " " + req.path + ": method not allowed (use " +
                                                   std::string(allow) + ")"}});
            };
        };
        for (const char* path : {"/api/classify", "/api/collect"}) {
            svr.Get(path, not_allowed("POST"));
            svr.Put(path, not_allowed("POST"));
            svr.Delete(path, not_allowed("POST"));
            svr.Patch(path, not_allowed("POST"));
        }
        for (const char* path : {"/", "/api/model"}) {
            svr.Post(path, not_allowed("GET"));
            svr.Put(path, not_allowed("GET"));
            svr.Delete(path, not_allowed("GET"));
            svr.Patch(path, not_allowed("GET"));
        }

        if (port == 0) {
            port = svr.bind_to_any_port(host);
            if (port <= 0) throw std::runtime_error("cannot listen on " + host + " (any port)");
        } else if (!svr.bind_to_port(host, port)) {
            throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port) +
                                     " (in use? --port 0 picks a free one)");
        }
        const std::string shown_host = host.find(':') != std::string::npos ? "[" + host + "]" : host;
        std::cout << "kitnn_serve: model " << file_name << " (" << name << ", "
                  << Sequential<float>::group(model.param_count()) << " parameters), " << threads
                  << " model cop" << (threads == 1 ? "y" : "ies") << (collector ? ", saving examples to " + collect_dir : "")
                  << "\nkitnn_serve: open http://" << shown_host << ":" << port << "/ (Ctrl-C stops)" << std::endl;
        if (host != "127.0.0.1" && host != "localhost" && host != "::1")
            std::cerr << "kitnn_serve: warning: listening on " << host
                      << ": other machines may reach this server, which has no authentication\n";

        // The signal thread: waits for SIGINT/SIGTERM, then stops the server. stop() does
        // nothing before listen_after_bind has started running: a signal that early waits
        // for it.
        std::atomic<int> got_signal{0};
        std::atomic<bool> listen_over{false};
        std::thread signal_thread([&] {
            int sig = 0;
            if (sigwait(&stop_signals, &sig) != 0 || listen_over) return;
            got_signal = sig;
            while (!svr.is_running() && !listen_over) std::this_thread::sleep_for(std::chrono::milliseconds(5));
            svr.stop();
        });
        const bool ok = svr.listen_after_bind();  // returns after stop(), in-flight requests answered
        listen_over = true;
        // listen ended on its own (an error): wake the signal thread so that it exits.
        if (!got_signal) pthread_kill(signal_thread.native_handle(), SIGTERM);
        signal_thread.join();
        std::cout << "kitnn_serve: stopped" << (got_signal ? got_signal == SIGINT ? " (SIGINT)" : " (SIGTERM)" : "")
                  << " after " << served << " classification" << (served == 1 ? "" : "s") << ", " << refused
                  << " refused request" << (refused == 1 ? "" : "s") << std::endl;
        return ok || got_signal ? 0 : 1;
    });
}
