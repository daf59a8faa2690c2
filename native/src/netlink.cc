// rtnetlink for the ADD/DEL paths of both dataplanes: links (veth, bridge),
// IPv4 addresses, IPv4 routes, and /proc/sys writes, replacing the iproute2
// spawns (~3-5 ms CPU each) with one worker-thread hop per batch.
//
// netlink(ops, netns?) runs `ops` in order on a libuv pool thread over ONE
// NETLINK_ROUTE socket and resolves with one result per op; the first failing
// op rejects the Promise (error: code/errno/op, plus `index` of the op).
// Nothing is rolled back: each kernel request is atomic on its own (a veth
// pair is created whole or not at all) and callers own multi-step undo.
//
// Another netns: a netlink socket stays bound to the netns it was created in,
// so the worker thread enters the netns only to call socket(), then returns
// at once (NetnsGuard restores it on every path, error included: libuv reuses
// pool threads, and a thread left in a pod netns would run unrelated later
// work there). All requests then go through that socket from the thread's
// own netns.
#include "bpf_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <string.h>
#include <sys/socket.h>
#include <pthread.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <memory>

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif

namespace vnet {
namespace {

// ---- message building -----------------------------------------------------

class Msg {
 public:
  Msg(uint16_t type, uint16_t flags) {
    memset(buf_, 0, sizeof(buf_));
    h()->nlmsg_len = NLMSG_LENGTH(0);
    h()->nlmsg_type = type;
    h()->nlmsg_flags = NLM_F_REQUEST | flags;
  }
  struct nlmsghdr* h() { return reinterpret_cast<struct nlmsghdr*>(buf_); }
  // Appends a zeroed fixed header (ifinfomsg, rtmsg, ...) and returns it.
  template <typename T>
  T* Body() {
    T* p = reinterpret_cast<T*>(Tail());
    h()->nlmsg_len = NLMSG_ALIGN(h()->nlmsg_len) + NLMSG_ALIGN(sizeof(T));
    return p;
  }
  void Attr(uint16_t type, const void* data, size_t len) {
    struct rtattr* a = reinterpret_cast<struct rtattr*>(Tail());
    a->rta_type = type;
    a->rta_len = RTA_LENGTH(len);
    if (len) memcpy(RTA_DATA(a), data, len);
    h()->nlmsg_len = NLMSG_ALIGN(h()->nlmsg_len) + RTA_ALIGN(a->rta_len);
  }
  void U32(uint16_t type, uint32_t v) { Attr(type, &v, sizeof(v)); }
  void Str(uint16_t type, const std::string& s) { Attr(type, s.c_str(), s.size() + 1); }
  struct rtattr* Nest(uint16_t type) {
    struct rtattr* a = reinterpret_cast<struct rtattr*>(Tail());
    Attr(type, nullptr, 0);
    return a;
  }
  void End(struct rtattr* nest) { nest->rta_len = static_cast<unsigned short>(Tail() - reinterpret_cast<char*>(nest)); }

 private:
  char* Tail() { return buf_ + NLMSG_ALIGN(h()->nlmsg_len); }
  alignas(NLMSG_ALIGNTO) char buf_[4096];
};

// ---- results ----------------------------------------------------------------

struct LinkRec {
  uint32_t index = 0, mtu = 0, flags = 0, master = 0;
  std::string name, address, kind, masterName;
  uint8_t operstate = 0;
  int32_t netnsid = -1;
  bool hasNetnsid = false;
};
struct AddrRec {
  uint32_t index = 0, prefixlen = 0, scope = 0;
  std::string local, broadcast;
};
struct RouteRec {
  uint32_t dstLen = 0, oif = 0, scope = 0, protocol = 0, flags = 0, metric = 0;
  bool hasMetric = false;
  std::string dst, gateway, prefsrc, dev;
};
struct NeighRec {
  uint16_t state = 0;
  std::string dst, lladdr;
};

using Attrs = std::map<uint16_t, struct rtattr*>;
Attrs ParseAttrs(struct rtattr* rta, int len) {
  Attrs out;
  for (; RTA_OK(rta, len); rta = RTA_NEXT(rta, len)) out[rta->rta_type & ~NLA_F_NESTED] = rta;
  return out;
}
std::string Ipv4(const void* p) {
  char s[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, p, s, sizeof(s));
  return s;
}
std::string Mac(const struct rtattr* a) {
  const uint8_t* b = static_cast<const uint8_t*>(RTA_DATA(a));
  size_t n = RTA_PAYLOAD(a);
  std::string out;
  char part[4];
  for (size_t i = 0; i < n; i++) {
    snprintf(part, sizeof(part), i ? ":%02x" : "%02x", b[i]);
    out += part;
  }
  return out;
}

// ---- the socket -------------------------------------------------------------

class Rtnl {
 public:
  ~Rtnl() {
    if (fd_ >= 0) close(fd_);
  }
  int Open() {
    fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd_ < 0) return errno;
    struct sockaddr_nl sa = {};
    sa.nl_family = AF_NETLINK;
    if (bind(fd_, reinterpret_cast<struct sockaddr*>(&sa), sizeof(sa)) != 0) return errno;
    int one = 1;  // extended ACKs: the kernel's own message for EINVAL and friends
    setsockopt(fd_, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
    return 0;
  }

  // Sends m and reads until its ACK (or NLMSG_DONE for dumps); each data
  // message goes to on_msg. Returns 0 or a positive errno; ext_msg gets the
  // kernel's extended-ACK text if any.
  int Call(Msg& m, const std::function<void(struct nlmsghdr*)>& on_msg = nullptr) {
    ext_msg.clear();
    uint32_t seq = ++seq_;
    m.h()->nlmsg_seq = seq;
    // NLM_F_DUMP shares bits with NLM_F_EXCL/REPLACE: only a GET can be a dump.
    uint16_t f = m.h()->nlmsg_flags, t = m.h()->nlmsg_type;
    bool dump = (t & 3) == 2 && (f & NLM_F_DUMP) == NLM_F_DUMP;
    if (!dump) m.h()->nlmsg_flags |= NLM_F_ACK;
    struct sockaddr_nl to = {};
    to.nl_family = AF_NETLINK;
    if (sendto(fd_, m.h(), m.h()->nlmsg_len, 0, reinterpret_cast<struct sockaddr*>(&to), sizeof(to)) < 0) return errno;
    std::vector<char> buf(32768);
    for (;;) {
      ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno;
      }
      int len = static_cast<int>(n);
      for (struct nlmsghdr* h = reinterpret_cast<struct nlmsghdr*>(buf.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
        if (h->nlmsg_seq != seq) continue;  // a stale reply to an earlier request
        if (h->nlmsg_type == NLMSG_DONE) return 0;
        if (h->nlmsg_type == NLMSG_ERROR) {
          struct nlmsgerr* e = static_cast<struct nlmsgerr*>(NLMSG_DATA(h));
          if (e->error != 0 && (h->nlmsg_flags & NLM_F_ACK_TLVS)) ReadExtAck(h, e);
          return -e->error;
        }
        if (on_msg) on_msg(h);
      }
    }
  }

  // Link by name (index 0) or index; ENODEV if absent.
  int GetLink(const std::string& name, uint32_t index, LinkRec* out) {
    Msg m(RTM_GETLINK, 0);
    struct ifinfomsg* ifi = m.Body<struct ifinfomsg>();
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = static_cast<int>(index);
    if (!index) m.Str(IFLA_IFNAME, name);
    bool found = false;
    int err = Call(m, [&](struct nlmsghdr* h) {
      if (h->nlmsg_type == RTM_NEWLINK) found = ParseLink(h, out);
    });
    if (err) return err;
    if (!found) return ENODEV;
    if (out->master) {
      LinkRec master;
      if (GetLink("", out->master, &master) == 0) out->masterName = master.name;
    }
    return 0;
  }

  int Index(const std::string& name, uint32_t* index) {
    LinkRec l;
    if (int err = GetLink(name, 0, &l)) return err;
    *index = l.index;
    return 0;
  }

  int DumpLinks(std::vector<LinkRec>* out) {
    Msg m(RTM_GETLINK, NLM_F_DUMP);
    m.Body<struct ifinfomsg>()->ifi_family = AF_UNSPEC;
    int err = Call(m, [&](struct nlmsghdr* h) {
      LinkRec l;
      if (h->nlmsg_type == RTM_NEWLINK && ParseLink(h, &l)) out->push_back(std::move(l));
    });
    if (err) return err;
    std::map<uint32_t, std::string> names;
    for (auto& l : *out) names[l.index] = l.name;
    for (auto& l : *out)
      if (l.master) l.masterName = names[l.master];
    return 0;
  }

  static bool ParseLink(struct nlmsghdr* h, LinkRec* l) {
    struct ifinfomsg* ifi = static_cast<struct ifinfomsg*>(NLMSG_DATA(h));
    Attrs a = ParseAttrs(IFLA_RTA(ifi), static_cast<int>(IFLA_PAYLOAD(h)));
    l->index = static_cast<uint32_t>(ifi->ifi_index);
    l->flags = ifi->ifi_flags;
    if (a.count(IFLA_IFNAME)) l->name = static_cast<const char*>(RTA_DATA(a[IFLA_IFNAME]));
    if (a.count(IFLA_ADDRESS)) l->address = Mac(a[IFLA_ADDRESS]);
    if (a.count(IFLA_MTU)) l->mtu = *static_cast<uint32_t*>(RTA_DATA(a[IFLA_MTU]));
    if (a.count(IFLA_MASTER)) l->master = *static_cast<uint32_t*>(RTA_DATA(a[IFLA_MASTER]));
    if (a.count(IFLA_OPERSTATE)) l->operstate = *static_cast<uint8_t*>(RTA_DATA(a[IFLA_OPERSTATE]));
    if (a.count(IFLA_LINK_NETNSID)) {
      l->hasNetnsid = true;
      l->netnsid = *static_cast<int32_t*>(RTA_DATA(a[IFLA_LINK_NETNSID]));
    }
    if (a.count(IFLA_LINKINFO)) {
      Attrs info = ParseAttrs(static_cast<struct rtattr*>(RTA_DATA(a[IFLA_LINKINFO])), static_cast<int>(RTA_PAYLOAD(a[IFLA_LINKINFO])));
      if (info.count(IFLA_INFO_KIND)) l->kind = static_cast<const char*>(RTA_DATA(info[IFLA_INFO_KIND]));
    }
    return true;
  }

  std::string ext_msg;

 private:
  void ReadExtAck(struct nlmsghdr* h, struct nlmsgerr* e) {
    // With NLM_F_CAPPED unset the original request follows the error header.
    size_t off = sizeof(*e);
    if (!(h->nlmsg_flags & NLM_F_CAPPED)) off += e->msg.nlmsg_len - NLMSG_HDRLEN;
    if (NLMSG_HDRLEN + off >= h->nlmsg_len) return;
    struct rtattr* rta = reinterpret_cast<struct rtattr*>(static_cast<char*>(NLMSG_DATA(h)) + off);
    Attrs a = ParseAttrs(rta, static_cast<int>(h->nlmsg_len - NLMSG_HDRLEN - off));
    if (a.count(NLMSGERR_ATTR_MSG)) ext_msg = static_cast<const char*>(RTA_DATA(a[NLMSGERR_ATTR_MSG]));
  }
  int fd_ = -1;
  uint32_t seq_ = 0;
};

// ---- ops --------------------------------------------------------------------

struct Op {
  std::string op;
  std::string dev, name, mac, kind, master, netns, key, value, address, broadcast, gateway, prefsrc;
  std::string peerName, peerMac, peerNetns;
  uint32_t mtu = 0, peerMtu = 0, prefixLength = 0, metric = 0, dstLen = 0, dst = 0;
  int up = -1;          // -1 leave, 0 down, 1 up
  int scope = -1;       // -1: derived as iproute2 does
  int protocol = -1;    // -1: RTPROT_BOOT, as iproute2
  bool hasMaster = false, hasMetric = false, replace = false, onlink = false, missingOk = false, isDefault = false;
  bool noPrefixRoute = false;
};

enum class ResultKind { None, Bool, Link, Links, Addrs, Routes, Neighs };
struct OpResult {
  ResultKind kind = ResultKind::None;
  bool flag = false;
  bool hasLink = false;
  LinkRec link;
  std::vector<LinkRec> links;
  std::vector<AddrRec> addrs;
  std::vector<RouteRec> routes;
  std::vector<NeighRec> neighs;
};

int ParseMac(const std::string& s, uint8_t out[6]) {
  unsigned v[6];
  if (sscanf(s.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return EINVAL;
  for (int i = 0; i < 6; i++) out[i] = static_cast<uint8_t>(v[i]);
  return 0;
}
int ParseIp(const std::string& s, struct in_addr* out) { return inet_pton(AF_INET, s.c_str(), out) == 1 ? 0 : EINVAL; }

// close(fd) on a short-lived detached thread; in place if none can be made.
void CloseInBackground(int fd) {
  pthread_attr_t attr;
  pthread_t t;
  bool started = false;
  if (pthread_attr_init(&attr) == 0) {
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    started = pthread_create(&t, &attr, [](void* arg) -> void* {
      close(static_cast<int>(reinterpret_cast<intptr_t>(arg)));
      return nullptr;
    }, reinterpret_cast<void*>(static_cast<intptr_t>(fd))) == 0;
    pthread_attr_destroy(&attr);
  }
  if (!started) close(fd);
}

class NetlinkWorker : public PromiseWorker {
 public:
  NetlinkWorker(Napi::Env env, std::vector<Op> ops, std::string netns)
      : PromiseWorker(env), ops_(std::move(ops)), netns_(std::move(netns)) {}

  void Execute() override {
    {
      // Only socket() runs inside the target netns; the guard brings the
      // thread back at the end of this block, on success and on error.
      NetnsGuard ns;
      const char* op = nullptr;
      if (int err = ns.Enter(netns_, &op)) return Fail(op, err, netns_);
      if (int err = nl_.Open()) return Fail("socket(NETLINK_ROUTE)", err, netns_);
    }
    results_.resize(ops_.size());
    for (size_t i = 0; i < ops_.size(); i++) {
      const Op& o = ops_[i];
      std::string what;
      int err = Run(o, &results_[i], &what);
      if (err) {
        failed_index_ = static_cast<int>(i);
        std::string detail = what;
        if (!nl_.ext_msg.empty()) detail += (detail.empty() ? "" : ": ") + nl_.ext_msg;
        if (!netns_.empty()) detail += " in " + netns_;
        return Fail(o.op, err, detail);
      }
    }
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Array out = Napi::Array::New(env, results_.size());
    for (uint32_t i = 0; i < results_.size(); i++) out.Set(i, ToJs(env, results_[i]));
    return out;
  }

  void Decorate(Napi::Error& e) override {
    if (failed_index_ >= 0) e.Set("index", Napi::Number::New(e.Env(), failed_index_));
  }

 private:
  int Dev(const std::string& name, uint32_t* index, std::string* what) {
    int err = nl_.Index(name, index);
    if (err) *what = "device " + name;
    return err;
  }

  int Run(const Op& o, OpResult* r, std::string* what) {
    if (o.op == "linkGet") {
      r->kind = ResultKind::Link;
      int err = nl_.GetLink(o.dev, 0, &r->link);
      if (err == ENODEV) return 0;
      r->hasLink = err == 0;
      *what = o.dev;
      return err;
    }
    if (o.op == "linkList") {
      r->kind = ResultKind::Links;
      return nl_.DumpLinks(&r->links);
    }
    if (o.op == "linkAdd") return LinkAdd(o, what);
    if (o.op == "linkSet") return LinkSet(o, what);
    if (o.op == "linkDel") {
      r->kind = ResultKind::Bool;
      uint32_t index = 0;
      int err = Dev(o.dev, &index, what);
      if (err == ENODEV && o.missingOk) return 0;
      if (err) return err;
      Msg m(RTM_DELLINK, 0);
      m.Body<struct ifinfomsg>()->ifi_index = static_cast<int>(index);
      err = nl_.Call(m);
      if (err == ENODEV && o.missingOk) return 0;  // gone in between (e.g. its peer's netns died)
      r->flag = err == 0;
      return err;
    }
    if (o.op == "addrAdd" || o.op == "addrDel") return Addr(o, r, what);
    if (o.op == "addrList") {
      r->kind = ResultKind::Addrs;
      return AddrList(o, r, what);
    }
    if (o.op == "routeAdd" || o.op == "routeDel") return Route(o, r, what);
    if (o.op == "routeList") {
      r->kind = ResultKind::Routes;
      return RouteList(o, r, what);
    }
    if (o.op == "sysctl") return Sysctl(o, what);
    if (o.op == "garp") return Garp(o, what);
    if (o.op == "neighAdd") return NeighAdd(o, what);
    if (o.op == "neighList") {
      r->kind = ResultKind::Neighs;
      return NeighList(o, r, what);
    }
    *what = "unknown op " + o.op;
    return EINVAL;
  }

  // linkAdd { name, kind: 'veth'|'bridge', mtu?, mac?, up?, peer?: { name, mtu?, mac?, netns? } }
  int LinkAdd(const Op& o, std::string* what) {
    *what = o.kind + " " + o.name;
    Msg m(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    struct ifinfomsg* ifi = m.Body<struct ifinfomsg>();
    ifi->ifi_family = AF_UNSPEC;
    if (o.up == 1) ifi->ifi_flags = ifi->ifi_change = IFF_UP;
    m.Str(IFLA_IFNAME, o.name);
    if (o.mtu) m.U32(IFLA_MTU, o.mtu);
    uint8_t mac[6];
    if (!o.mac.empty()) {
      if (ParseMac(o.mac, mac)) return EINVAL;
      m.Attr(IFLA_ADDRESS, mac, 6);
    }
    int peer_ns = -1;
    struct rtattr* info = m.Nest(IFLA_LINKINFO);
    m.Str(IFLA_INFO_KIND, o.kind);
    struct rtattr* data = m.Nest(IFLA_INFO_DATA);
    if (o.kind == "veth") {
      // The peer is created directly in the pod netns (IFLA_NET_NS_FD inside
      // VETH_INFO_PEER): no window where it exists in the host netns.
      struct rtattr* peer = m.Nest(VETH_INFO_PEER);
      m.Body<struct ifinfomsg>()->ifi_family = AF_UNSPEC;
      m.Str(IFLA_IFNAME, o.peerName);
      if (o.peerMtu) m.U32(IFLA_MTU, o.peerMtu);
      if (!o.peerMac.empty()) {
        uint8_t pmac[6];
        if (ParseMac(o.peerMac, pmac)) return EINVAL;
        m.Attr(IFLA_ADDRESS, pmac, 6);
      }
      if (!o.peerNetns.empty()) {
        peer_ns = open(o.peerNetns.c_str(), O_RDONLY | O_CLOEXEC);
        if (peer_ns < 0) {
          *what = "netns " + o.peerNetns;
          return errno;
        }
        m.U32(IFLA_NET_NS_FD, static_cast<uint32_t>(peer_ns));
      }
      m.End(peer);
    } else if (o.kind == "bridge") {
      m.U32(IFLA_BR_FORWARD_DELAY, 0);
    }
    m.End(data);
    m.End(info);
    int err = nl_.Call(m);
    if (peer_ns >= 0) close(peer_ns);
    return err;
  }

  // linkSet { dev, up?, mtu?, mac?, name? (rename), master? ('' = none), netns? (move) }
  int LinkSet(const Op& o, std::string* what) {
    uint32_t index = 0, master = 0;
    if (int err = Dev(o.dev, &index, what)) return err;
    if (o.hasMaster && !o.master.empty())
      if (int err = Dev(o.master, &master, what)) return err;
    *what = o.dev;
    Msg m(RTM_NEWLINK, 0);
    struct ifinfomsg* ifi = m.Body<struct ifinfomsg>();
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = static_cast<int>(index);
    if (o.up >= 0) {
      ifi->ifi_change = IFF_UP;
      ifi->ifi_flags = o.up ? IFF_UP : 0;
    }
    if (o.mtu) m.U32(IFLA_MTU, o.mtu);
    if (!o.mac.empty()) {
      uint8_t mac[6];
      if (ParseMac(o.mac, mac)) return EINVAL;
      m.Attr(IFLA_ADDRESS, mac, 6);
    }
    if (!o.name.empty()) m.Str(IFLA_IFNAME, o.name);
    if (o.hasMaster) m.U32(IFLA_MASTER, master);
    int ns = -1;
    if (!o.netns.empty()) {
      ns = open(o.netns.c_str(), O_RDONLY | O_CLOEXEC);
      if (ns < 0) {
        *what = "netns " + o.netns;
        return errno;
      }
      m.U32(IFLA_NET_NS_FD, static_cast<uint32_t>(ns));
    }
    int err = nl_.Call(m);
    if (ns >= 0) close(ns);
    return err;
  }

  // addrAdd/addrDel { dev, address, prefixLength, broadcast?, replace?, missingOk? }
  int Addr(const Op& o, OpResult* r, std::string* what) {
    bool add = o.op == "addrAdd";
    r->kind = add ? ResultKind::None : ResultKind::Bool;
    uint32_t index = 0;
    if (int err = Dev(o.dev, &index, what)) return (err == ENODEV && o.missingOk && !add) ? 0 : err;
    *what = o.address + "/" + std::to_string(o.prefixLength) + " dev " + o.dev;
    struct in_addr local, brd;
    if (ParseIp(o.address, &local) || o.prefixLength > 32) return EINVAL;
    Msg m(add ? RTM_NEWADDR : RTM_DELADDR, add ? (NLM_F_CREATE | (o.replace ? NLM_F_REPLACE : NLM_F_EXCL)) : 0);
    struct ifaddrmsg* ifa = m.Body<struct ifaddrmsg>();
    ifa->ifa_family = AF_INET;
    ifa->ifa_prefixlen = static_cast<uint8_t>(o.prefixLength);
    ifa->ifa_scope = o.scope >= 0 ? static_cast<uint8_t>(o.scope) : static_cast<uint8_t>(RT_SCOPE_UNIVERSE);
    ifa->ifa_index = index;
    m.Attr(IFA_LOCAL, &local, 4);
    m.Attr(IFA_ADDRESS, &local, 4);
    if (!o.broadcast.empty()) {
      if (ParseIp(o.broadcast, &brd)) return EINVAL;
      m.Attr(IFA_BROADCAST, &brd, 4);
    }
    // The address without the kernel's prefix route (a routed pod keeps its
    // subnet prefix but must send everything to its gateway).
    if (add && o.noPrefixRoute) m.U32(IFA_FLAGS, IFA_F_NOPREFIXROUTE);
    int err = nl_.Call(m);
    if (!add && err == EADDRNOTAVAIL && o.missingOk) return 0;
    r->flag = err == 0;
    return err;
  }

  int AddrList(const Op& o, OpResult* r, std::string* what) {
    uint32_t index = 0;
    if (!o.dev.empty())
      if (int err = Dev(o.dev, &index, what)) return err;
    Msg m(RTM_GETADDR, NLM_F_DUMP);
    m.Body<struct ifaddrmsg>()->ifa_family = AF_INET;
    return nl_.Call(m, [&](struct nlmsghdr* h) {
      if (h->nlmsg_type != RTM_NEWADDR) return;
      struct ifaddrmsg* ifa = static_cast<struct ifaddrmsg*>(NLMSG_DATA(h));
      if (ifa->ifa_family != AF_INET || (index && ifa->ifa_index != index)) return;
      Attrs a = ParseAttrs(IFA_RTA(ifa), static_cast<int>(IFA_PAYLOAD(h)));
      AddrRec rec;
      rec.index = ifa->ifa_index;
      rec.prefixlen = ifa->ifa_prefixlen;
      rec.scope = ifa->ifa_scope;
      struct rtattr* l = a.count(IFA_LOCAL) ? a[IFA_LOCAL] : (a.count(IFA_ADDRESS) ? a[IFA_ADDRESS] : nullptr);
      if (!l) return;
      rec.local = Ipv4(RTA_DATA(l));
      if (a.count(IFA_BROADCAST)) rec.broadcast = Ipv4(RTA_DATA(a[IFA_BROADCAST]));
      r->addrs.push_back(std::move(rec));
    });
  }

  // routeAdd/routeDel { dst ('default' = dstLen 0), dstLen, gateway?, dev?, onlink?, scope?, protocol?, prefsrc?, metric?, replace?, missingOk? }
  int Route(const Op& o, OpResult* r, std::string* what) {
    bool add = o.op == "routeAdd";
    r->kind = add ? ResultKind::None : ResultKind::Bool;
    uint32_t oif = 0;
    if (!o.dev.empty())
      if (int err = Dev(o.dev, &oif, what)) return (err == ENODEV && o.missingOk && !add) ? 0 : err;
    *what = o.isDefault ? "default" : o.address + "/" + std::to_string(o.dstLen);
    if (!o.gateway.empty()) *what += " via " + o.gateway;
    if (!o.dev.empty()) *what += " dev " + o.dev;
    Msg m(add ? RTM_NEWROUTE : RTM_DELROUTE, add ? (NLM_F_CREATE | (o.replace ? NLM_F_REPLACE : NLM_F_EXCL)) : 0);
    struct rtmsg* rt = m.Body<struct rtmsg>();
    rt->rtm_family = AF_INET;
    rt->rtm_dst_len = static_cast<uint8_t>(o.isDefault ? 0 : o.dstLen);
    rt->rtm_table = RT_TABLE_MAIN;
    rt->rtm_type = RTN_UNICAST;
    rt->rtm_protocol = o.protocol >= 0 ? static_cast<uint8_t>(o.protocol) : RTPROT_BOOT;
    // As iproute2: scope link for a route without gateway, universe with one;
    // a delete matches any scope.
    if (o.scope >= 0) rt->rtm_scope = static_cast<uint8_t>(o.scope);
    else if (!add) rt->rtm_scope = RT_SCOPE_NOWHERE;
    else rt->rtm_scope = o.gateway.empty() ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
    if (o.onlink) rt->rtm_flags |= RTNH_F_ONLINK;
    struct in_addr a;
    if (!o.isDefault) {
      if (ParseIp(o.address, &a) || o.dstLen > 32) return EINVAL;
      m.Attr(RTA_DST, &a, 4);
    }
    if (!o.gateway.empty()) {
      if (ParseIp(o.gateway, &a)) return EINVAL;
      m.Attr(RTA_GATEWAY, &a, 4);
    }
    if (oif) m.U32(RTA_OIF, oif);
    if (!o.prefsrc.empty()) {
      if (ParseIp(o.prefsrc, &a)) return EINVAL;
      m.Attr(RTA_PREFSRC, &a, 4);
    }
    if (o.hasMetric) m.U32(RTA_PRIORITY, o.metric);
    int err = nl_.Call(m);
    if (!add && err == ESRCH && o.missingOk) return 0;
    r->flag = err == 0;
    return err;
  }

  // routeList { dev?, defaultOnly? }: IPv4 unicast routes of the main table.
  int RouteList(const Op& o, OpResult* r, std::string* what) {
    std::vector<LinkRec> links;
    if (int err = nl_.DumpLinks(&links)) return err;
    std::map<uint32_t, std::string> names;
    uint32_t want = 0;
    for (auto& l : links) {
      names[l.index] = l.name;
      if (l.name == o.dev) want = l.index;
    }
    if (!o.dev.empty() && !want) {
      *what = "device " + o.dev;
      return ENODEV;
    }
    Msg m(RTM_GETROUTE, NLM_F_DUMP);
    m.Body<struct rtmsg>()->rtm_family = AF_INET;
    return nl_.Call(m, [&](struct nlmsghdr* h) {
      if (h->nlmsg_type != RTM_NEWROUTE) return;
      struct rtmsg* rt = static_cast<struct rtmsg*>(NLMSG_DATA(h));
      Attrs a = ParseAttrs(RTM_RTA(rt), static_cast<int>(RTM_PAYLOAD(h)));
      uint32_t table = a.count(RTA_TABLE) ? *static_cast<uint32_t*>(RTA_DATA(a[RTA_TABLE])) : rt->rtm_table;
      if (rt->rtm_family != AF_INET || table != RT_TABLE_MAIN || rt->rtm_type != RTN_UNICAST) return;
      if (o.isDefault && rt->rtm_dst_len != 0) return;
      RouteRec rec;
      rec.dstLen = rt->rtm_dst_len;
      rec.scope = rt->rtm_scope;
      rec.protocol = rt->rtm_protocol;
      rec.flags = rt->rtm_flags;
      rec.dst = a.count(RTA_DST) ? Ipv4(RTA_DATA(a[RTA_DST])) : "0.0.0.0";
      if (a.count(RTA_GATEWAY)) rec.gateway = Ipv4(RTA_DATA(a[RTA_GATEWAY]));
      if (a.count(RTA_PREFSRC)) rec.prefsrc = Ipv4(RTA_DATA(a[RTA_PREFSRC]));
      if (a.count(RTA_OIF)) rec.oif = *static_cast<uint32_t*>(RTA_DATA(a[RTA_OIF]));
      if (a.count(RTA_PRIORITY)) {
        rec.hasMetric = true;
        rec.metric = *static_cast<uint32_t*>(RTA_DATA(a[RTA_PRIORITY]));
      }
      if (want && rec.oif != want) return;
      rec.dev = names[rec.oif];
      r->routes.push_back(std::move(rec));
    });
  }

  // sysctl { key: 'net/ipv4/ip_forward' (path under /proc/sys), value }.
  // /proc/sys/net resolves against the netns of the thread that opens the
  // file, so for a pod netns the thread enters it for the open() only (the
  // written fd then stays bound to that netns, like the netlink socket).
  int Sysctl(const Op& o, std::string* what) {
    *what = "/proc/sys/" + o.key;
    if (o.key.find("..") != std::string::npos) return EINVAL;
    int fd;
    {
      NetnsGuard ns;
      const char* op = nullptr;
      if (int err = ns.Enter(netns_, &op)) return err;
      fd = open(what->c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) return errno;
    }
    ssize_t n = write(fd, o.value.data(), o.value.size());
    int err = n < 0 ? errno : (static_cast<size_t>(n) == o.value.size() ? 0 : EIO);
    close(fd);
    return err;
  }

  // neighAdd { dev, address, mac }: a permanent IPv4 neighbour entry (created
  // or replaced), e.g. a routed pod's gateway at the host veth's MAC.
  int NeighAdd(const Op& o, std::string* what) {
    uint32_t index = 0;
    if (int err = Dev(o.dev, &index, what)) return err;
    *what = "neighbour " + o.address + " lladdr " + o.mac + " dev " + o.dev;
    struct in_addr ip;
    uint8_t mac[6];
    if (ParseIp(o.address, &ip) || ParseMac(o.mac, mac)) return EINVAL;
    Msg m(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE);
    struct ndmsg* nd = m.Body<struct ndmsg>();
    nd->ndm_family = AF_INET;
    nd->ndm_ifindex = static_cast<int>(index);
    nd->ndm_state = NUD_PERMANENT;
    nd->ndm_type = RTN_UNICAST;
    m.Attr(NDA_DST, &ip, 4);
    m.Attr(NDA_LLADDR, mac, 6);
    return nl_.Call(m);
  }

  // neighList { dev }: the IPv4 neighbour entries of dev.
  int NeighList(const Op& o, OpResult* r, std::string* what) {
    uint32_t index = 0;
    if (int err = Dev(o.dev, &index, what)) return err;
    Msg m(RTM_GETNEIGH, NLM_F_DUMP);
    m.Body<struct ndmsg>()->ndm_family = AF_INET;
    return nl_.Call(m, [&](struct nlmsghdr* h) {
      if (h->nlmsg_type != RTM_NEWNEIGH) return;
      struct ndmsg* nd = static_cast<struct ndmsg*>(NLMSG_DATA(h));
      if (nd->ndm_family != AF_INET || static_cast<uint32_t>(nd->ndm_ifindex) != index) return;
      Attrs a = ParseAttrs(reinterpret_cast<struct rtattr*>(reinterpret_cast<char*>(nd) + NLMSG_ALIGN(sizeof(*nd))),
                           static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*nd))));
      if (!a.count(NDA_DST)) return;
      NeighRec rec;
      rec.state = nd->ndm_state;
      rec.dst = Ipv4(RTA_DATA(a[NDA_DST]));
      if (a.count(NDA_LLADDR)) rec.lladdr = Mac(a[NDA_LLADDR]);
      r->neighs.push_back(std::move(rec));
    });
  }

  // garp { dev, address, mac }: one gratuitous ARP request (sender = target =
  // address) out of dev. A pod that takes an address another pod held a moment
  // ago must announce it: its bridge neighbours still cache the old MAC, and
  // Linux lets a gratuitous ARP override an existing entry (not create one).
  // The packet socket, like the netlink one, is opened inside the netns.
  int Garp(const Op& o, std::string* what) {
    *what = "gratuitous ARP for " + o.address + " on " + o.dev;
    uint32_t index = 0;
    if (int err = Dev(o.dev, &index, what)) return err;
    struct in_addr ip;
    uint8_t mac[6];
    if (ParseIp(o.address, &ip) || ParseMac(o.mac, mac)) return EINVAL;
    int fd;
    {
      NetnsGuard ns;
      const char* op = nullptr;
      if (int err = ns.Enter(netns_, &op)) return err;
      fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP));
      if (fd < 0) return errno;
    }
    // SOCK_DGRAM: the kernel writes the Ethernet header from sll_addr (broadcast).
    struct __attribute__((packed)) {
      struct arphdr h;
      uint8_t sha[6], spa[4], tha[6], tpa[4];
    } arp;
    memset(&arp, 0, sizeof(arp));
    arp.h.ar_hrd = htons(ARPHRD_ETHER);
    arp.h.ar_pro = htons(ETH_P_IP);
    arp.h.ar_hln = 6;
    arp.h.ar_pln = 4;
    arp.h.ar_op = htons(ARPOP_REQUEST);
    memcpy(arp.sha, mac, 6);
    memcpy(arp.spa, &ip, 4);
    memcpy(arp.tpa, &ip, 4);
    struct sockaddr_ll to;
    memset(&to, 0, sizeof(to));
    to.sll_family = AF_PACKET;
    to.sll_protocol = htons(ETH_P_ARP);
    to.sll_ifindex = static_cast<int>(index);
    to.sll_halen = 6;
    memset(to.sll_addr, 0xff, 6);
    ssize_t n = sendto(fd, &arp, sizeof(arp), 0, reinterpret_cast<struct sockaddr*>(&to), sizeof(to));
    int err = n < 0 ? errno : 0;
    // Closing a packet socket waits for an RCU grace period (packet_release
    // calls synchronize_net): 10-20 ms, longer than the rest of an ADD. The
    // frame is already queued, so a detached thread closes it and the ADD
    // (and this libuv pool thread) moves on.
    CloseInBackground(fd);
    return err;
  }

  static Napi::Value LinkJs(Napi::Env env, const LinkRec& l) {
    static const char* states[] = {"UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP"};
    Napi::Object o = Napi::Object::New(env);
    o.Set("ifindex", l.index);
    o.Set("ifname", l.name);
    o.Set("address", l.address);
    o.Set("mtu", l.mtu);
    o.Set("operstate", l.operstate < 7 ? states[l.operstate] : "UNKNOWN");
    Napi::Array flags = Napi::Array::New(env);
    uint32_t n = 0;
    if (l.flags & IFF_UP) flags.Set(n++, "UP");
    if (l.flags & IFF_LOWER_UP) flags.Set(n++, "LOWER_UP");
    if (l.flags & IFF_LOOPBACK) flags.Set(n++, "LOOPBACK");
    if (l.flags & IFF_NOARP) flags.Set(n++, "NOARP");
    o.Set("flags", flags);
    if (!l.masterName.empty()) o.Set("master", l.masterName);
    if (l.hasNetnsid) o.Set("link_netnsid", l.netnsid);
    if (!l.kind.empty()) {
      Napi::Object info = Napi::Object::New(env);
      info.Set("info_kind", l.kind);
      o.Set("linkinfo", info);
    }
    return o;
  }

  static const char* ScopeName(uint32_t s) {
    switch (s) {
      case RT_SCOPE_UNIVERSE: return "global";
      case RT_SCOPE_LINK: return "link";
      case RT_SCOPE_HOST: return "host";
      case RT_SCOPE_SITE: return "site";
      default: return "nowhere";
    }
  }

  Napi::Value ToJs(Napi::Env env, const OpResult& r) {
    switch (r.kind) {
      case ResultKind::None: return env.Undefined();
      case ResultKind::Bool: return Napi::Boolean::New(env, r.flag);
      case ResultKind::Link: return r.hasLink ? LinkJs(env, r.link) : env.Null();
      case ResultKind::Links: {
        Napi::Array a = Napi::Array::New(env, r.links.size());
        for (uint32_t i = 0; i < r.links.size(); i++) a.Set(i, LinkJs(env, r.links[i]));
        return a;
      }
      case ResultKind::Addrs: {
        Napi::Array a = Napi::Array::New(env, r.addrs.size());
        for (uint32_t i = 0; i < r.addrs.size(); i++) {
          Napi::Object o = Napi::Object::New(env);
          o.Set("family", "inet");
          o.Set("ifindex", r.addrs[i].index);
          o.Set("local", r.addrs[i].local);
          o.Set("prefixlen", r.addrs[i].prefixlen);
          if (!r.addrs[i].broadcast.empty()) o.Set("broadcast", r.addrs[i].broadcast);
          o.Set("scope", ScopeName(r.addrs[i].scope));
          a.Set(i, o);
        }
        return a;
      }
      case ResultKind::Neighs: {
        Napi::Array a = Napi::Array::New(env, r.neighs.size());
        for (uint32_t i = 0; i < r.neighs.size(); i++) {
          Napi::Object o = Napi::Object::New(env);
          o.Set("dst", r.neighs[i].dst);
          if (!r.neighs[i].lladdr.empty()) o.Set("lladdr", r.neighs[i].lladdr);
          o.Set("permanent", (r.neighs[i].state & NUD_PERMANENT) != 0);
          a.Set(i, o);
        }
        return a;
      }
      case ResultKind::Routes: {
        static const std::map<uint32_t, const char*> protos = {{RTPROT_KERNEL, "kernel"}, {RTPROT_BOOT, "boot"}, {RTPROT_STATIC, "static"}, {16, "dhcp"}};
        Napi::Array a = Napi::Array::New(env, r.routes.size());
        for (uint32_t i = 0; i < r.routes.size(); i++) {
          const RouteRec& x = r.routes[i];
          Napi::Object o = Napi::Object::New(env);
          o.Set("dst", x.dstLen == 0 ? std::string("default") : x.dst + "/" + std::to_string(x.dstLen));
          if (!x.gateway.empty()) o.Set("gateway", x.gateway);
          if (!x.dev.empty()) o.Set("dev", x.dev);
          auto p = protos.find(x.protocol);
          o.Set("protocol", p != protos.end() ? std::string(p->second) : std::to_string(x.protocol));
          o.Set("scope", ScopeName(x.scope));
          if (!x.prefsrc.empty()) o.Set("prefsrc", x.prefsrc);
          if (x.hasMetric) o.Set("metric", x.metric);
          Napi::Array flags = Napi::Array::New(env);
          if (x.flags & RTNH_F_ONLINK) flags.Set(0u, "onlink");
          o.Set("flags", flags);
          a.Set(i, o);
        }
        return a;
      }
    }
    return env.Undefined();
  }

  std::vector<Op> ops_;
  std::string netns_;
  std::vector<OpResult> results_;
  Rtnl nl_;
  int failed_index_ = -1;
};

std::string Str(Napi::Object o, const char* k) { return o.Get(k).IsString() ? o.Get(k).As<Napi::String>().Utf8Value() : ""; }
uint32_t U32(Napi::Object o, const char* k) { return o.Get(k).IsNumber() ? o.Get(k).As<Napi::Number>().Uint32Value() : 0; }

bool ParseOp(Napi::Env env, Napi::Value v, Op* op) {
  if (!v.IsObject()) {
    ThrowType(env, "every op must be an object");
    return false;
  }
  Napi::Object o = v.As<Napi::Object>();
  op->op = Str(o, "op");
  op->dev = Str(o, "dev");
  op->name = Str(o, "name");
  op->mac = Str(o, "mac");
  op->kind = Str(o, "kind");
  op->netns = Str(o, "netns");
  op->key = Str(o, "key");
  op->value = Str(o, "value");
  op->address = Str(o, "address");
  op->broadcast = Str(o, "broadcast");
  op->gateway = Str(o, "gateway");
  op->prefsrc = Str(o, "prefsrc");
  op->mtu = U32(o, "mtu");
  op->prefixLength = U32(o, "prefixLength");
  op->dstLen = U32(o, "dstLen");
  if (o.Get("up").IsBoolean()) op->up = o.Get("up").As<Napi::Boolean>().Value() ? 1 : 0;
  if (o.Get("scope").IsNumber()) op->scope = o.Get("scope").As<Napi::Number>().Int32Value();
  if (o.Get("protocol").IsNumber()) op->protocol = o.Get("protocol").As<Napi::Number>().Int32Value();
  if (o.Has("master")) {
    op->hasMaster = true;
    op->master = Str(o, "master");
  }
  if (o.Get("metric").IsNumber()) {
    op->hasMetric = true;
    op->metric = U32(o, "metric");
  }
  op->replace = o.Get("replace").ToBoolean().Value();
  op->onlink = o.Get("onlink").ToBoolean().Value();
  op->missingOk = o.Get("missingOk").ToBoolean().Value();
  op->isDefault = o.Get("default").ToBoolean().Value();
  op->noPrefixRoute = o.Get("noPrefixRoute").ToBoolean().Value();
  if (o.Get("peer").IsObject()) {
    Napi::Object p = o.Get("peer").As<Napi::Object>();
    op->peerName = Str(p, "name");
    op->peerMac = Str(p, "mac");
    op->peerNetns = Str(p, "netns");
    op->peerMtu = U32(p, "mtu");
  }
  if (op->op.empty()) {
    ThrowType(env, "op.op is required");
    return false;
  }
  return true;
}

// netlink(ops: object[], netns?: string) -> Promise<unknown[]>
Napi::Value Netlink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) {
    ThrowType(env, "netlink(ops: object[], netns?: string)");
    return env.Undefined();
  }
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<Op> ops(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++)
    if (!ParseOp(env, arr.Get(i), &ops[i])) return env.Undefined();
  std::string netns = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  auto* w = new NetlinkWorker(env, std::move(ops), std::move(netns));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

Napi::Object InitNetlink(Napi::Env env, Napi::Object exports) {
  exports.Set("netlink", Napi::Function::New(env, Netlink));
  return exports;
}

}  // namespace vnet
