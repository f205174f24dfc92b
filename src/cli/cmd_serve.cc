// `cellcube serve STORE`: the HTTP API and the web page, until SIGTERM or Ctrl-C.
#include <csignal>
#include <cstdio>
#include <iostream>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/table.h"
#include "server/api.h"
#include "server/http.h"
#include "server/store_holder.h"
#include "util/isolate.h"
#include "util/text.h"

namespace cellcube::cli {

const char* const kServeHelp =
    "usage: cellcube serve STORE [--host 127.0.0.1] [--port 8080] [--threads N]\n"
    "                      [--cache-mb N] [--preload] [--preload-max SIZE] [--quiet]\n\n"
    "Serves a store over HTTP/1.1: the web page at / and the JSON API of docs/API.md\n"
    "(/api/v1/query, /api/v1/meta, /api/v1/counts, /api/v1/genes, /healthz). A store\n"
    "file replaced on disk (e.g. by 'cellcube add') is picked up without a restart.\n"
    "SIGTERM or Ctrl-C finishes the requests in flight and exits.\n\n"
    "  --host ADDR    address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)\n"
    "  --port N       TCP port (default 8080; 0 picks a free one and prints it)\n"
    "  --threads N    server threads (default: every core)\n"
    "  --cache-mb N   memory for answers kept per store version, so a dot plot asked\n"
    "                 again is not computed again (default 64; 0 = none)\n"
    "  --preload      copy the store's arrays into memory on 2 MB pages at start (and at\n"
    "                 each reload): answers that read across the whole store, such as a\n"
    "                 DE over every dataset, take fewer page faults and TLB misses. Used\n"
    "                 when the arrays fit in --preload-max; else the file's mapping is\n"
    "                 read, as without, and the start says why\n"
    "  --preload-max SIZE  the most memory --preload may take: 8G, 512M, bytes (default:\n"
    "                 three quarters of the memory available)\n"
    "  --quiet        print only errors\n";

// What --preload did, in one line.
std::string PreloadLine(const PreloadReport& r) {
  if (!r.done) return "not preloaded: " + r.why_not + "; reading the file's mapping";
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.1f", r.seconds);
  return "preloaded " + FormatBytes(r.bytes) + " of arrays into memory in " + seconds + " s (" +
         FormatBytes(r.huge_bytes) + " of it on 2 MB pages)";
}

Status RunServe(const std::vector<std::string>& argv) {
  CC_ASSIGN_OR_RETURN(Args args, Args::Parse(argv, {{"host", true},
                                                    {"port", true},
                                                    {"threads", true},
                                                    {"cache-mb", true},
                                                    {"preload", false},
                                                    {"preload-max", true},
                                                    {"quiet", false}}));
  if (args.positionals().size() != 1) return Status::Usage("serve needs exactly one STORE");
  server::HttpOptions options;
  options.host = args.GetOr("host", "127.0.0.1");
  CC_ASSIGN_OR_RETURN(int64_t port, args.GetInt("port", 8080, 0, 65535));
  CC_ASSIGN_OR_RETURN(int64_t threads, args.GetInt("threads", 0, 0, 256));
  CC_ASSIGN_OR_RETURN(int64_t cache_mb, args.GetInt("cache-mb", 64, 0, 1 << 20));
  server::ApiLimits limits;
  limits.cache_bytes = static_cast<size_t>(cache_mb) << 20;
  options.port = static_cast<int>(port);
  options.threads = static_cast<int>(threads);
  const bool quiet = args.Flag("quiet");
  StoreOpenOptions open;
  open.preload = args.Flag("preload");
  if (auto max = args.Get("preload-max")) {
    if (!open.preload) return Status::Usage("--preload-max needs --preload");
    CC_ASSIGN_OR_RETURN(open.preload_max, ParseMemoryLimit(*max, "--preload-max"));
  }

  // Signals go to the thread that waits for them, never to the server's threads.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  CC_ASSIGN_OR_RETURN(auto holder, server::StoreHolder::Open(args.positionals()[0], open));
  CC_ASSIGN_OR_RETURN(auto http,
                      server::HttpServer::Start(options, server::MakeApi(holder.get(), limits)));
  holder->StartWatching(500, [](const std::string& line) {
    std::fprintf(stderr, "cellcube serve: %s\n", PrintableLine(line, 2000).c_str());
  });
  if (!quiet) {
    auto snap = holder->Get();
    int64_t cells = 0;
    for (const auto& d : snap->store().meta().datasets) cells += d.n_cells;
    std::printf("serving %s (%lld datasets, %s cells, %s genes)\n  open http://%s:%d/\n",
                args.positionals()[0].c_str(), static_cast<long long>(snap->store().n_datasets()),
                WithThousands(cells).c_str(), WithThousands(snap->store().n_genes()).c_str(),
                options.host == "0.0.0.0" ? "127.0.0.1" : options.host.c_str(), http->port());
    if (open.preload) std::printf("  %s\n", PreloadLine(snap->store().preload()).c_str());
    std::fflush(stdout);
  }
  int sig = 0;
  sigwait(&signals, &sig);
  if (!quiet) std::fprintf(stderr, "cellcube serve: finishing requests in flight and exiting\n");
  http->Drain(5000);
  return Status::Ok();
}

}  // namespace cellcube::cli
