# The native addons of tandem's real drivers (node-addon-api, N-API version 8), built by
# native/build.ts during `npm ci` (the root package's install script), offline: node-gyp is
# pointed at local headers with --nodedir, never at a download.
# - tandem_native: libnftables transactions, rtnetlink addresses (libmnl), and ARP frames
#   through an AF_PACKET socket.
# - tandem_fuse: the replicator's FUSE passthrough file system (libfuse 3, Debian's
#   libfuse3-dev) and its lane (HMAC and AES-GCM from the OpenSSL that Node exports, with the headers
#   of --nodedir). A target of its own, so that each addon builds and loads on its own.
{
  "targets": [
    {
      "target_name": "tandem_native",
      "sources": ["src/addon.cc", "src/nft.cc", "src/rtnl.cc", "src/arp.cc"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
      "libraries": ["-lnftables", "-lmnl", "-lpthread"]
    },
    {
      "target_name": "tandem_fuse",
      "sources": ["src/fuse-addon.cc", "src/fuse-passthrough.cc", "src/fuse-lane.cc", "src/fuse-kernel-io.cc"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE", "_FILE_OFFSET_BITS=64", "FUSE_USE_VERSION=312"],
      "include_dirs": ["/usr/include/fuse3"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Wno-deprecated-declarations"],
      "libraries": ["-lfuse3", "-lpthread"]
    }
  ]
}
