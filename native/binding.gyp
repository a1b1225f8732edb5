# The native addon of tandem's real drivers (node-addon-api, N-API version 8): libnftables
# transactions, rtnetlink addresses (libmnl), and ARP frames through an AF_PACKET socket.
# Built by native/build.ts during `npm ci` (the root package's install script), offline:
# node-gyp is pointed at local headers with --nodedir, never at a download.
{
  "targets": [
    {
      "target_name": "tandem_native",
      "sources": ["src/addon.cc", "src/nft.cc", "src/rtnl.cc", "src/arp.cc"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
      "libraries": ["-lnftables", "-lmnl", "-lpthread"]
    }
  ]
}
