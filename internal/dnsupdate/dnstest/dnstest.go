// Package dnstest runs a small authoritative DNS server on loopback for
// tests: one zone, A records and TXT records, and RFC 2136 updates that
// must carry a valid TSIG signature. It answers over UDP and TCP on the
// same port, so both an ACME server's validator (Pebble asks over TCP)
// and certmagic's zone and propagation checks can use it. Import it from
// tests only.
package dnstest

import (
	"crypto/rand"
	"encoding/base64"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Server is a running test name server.
type Server struct {
	// Addr is host:port, for UDP and TCP alike.
	Addr string
	// Zone is the zone it is authoritative for (fully qualified).
	Zone string
	// KeyName and Secret are the TSIG key updates must be signed with
	// (hmac-sha256).
	KeyName, Secret string

	mu      sync.Mutex
	a       map[string]net.IP
	txt     map[string][]string
	updates int
	refused int
}

// Start serves zone until the test ends. Every name in the zone without
// its own A record resolves to 127.0.0.1.
func Start(t testing.TB, zone string) *Server {
	t.Helper()
	secret := make([]byte, 32)
	rand.Read(secret)
	s := &Server{
		Zone: dns.Fqdn(strings.ToLower(zone)), KeyName: "mirrornet-test.", Secret: base64.StdEncoding.EncodeToString(secret),
		a: map[string]net.IP{}, txt: map[string][]string{},
	}
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatal("dnstest: no port free for both UDP and TCP")
	}
	s.Addr = pc.LocalAddr().String()
	tsig := map[string]string{s.KeyName: s.Secret}
	// miekg/dns answers NOTIMP to updates unless told to accept them.
	accept := func(dh dns.Header) dns.MsgAcceptAction {
		if int(dh.Bits>>11)&0xF == dns.OpcodeUpdate {
			return dns.MsgAccept
		}
		return dns.DefaultMsgAcceptFunc(dh)
	}
	udp := &dns.Server{PacketConn: pc, Handler: s, TsigSecret: tsig, MsgAcceptFunc: accept}
	tcp := &dns.Server{Listener: ln, Handler: s, TsigSecret: tsig, MsgAcceptFunc: accept}
	var wg sync.WaitGroup
	wg.Go(func() { udp.ActivateAndServe() })
	wg.Go(func() { tcp.ActivateAndServe() })
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
		wg.Wait()
	})
	return s
}

// TXT returns the TXT strings held for name (each record's strings
// joined).
func (s *Server) TXT(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.txt[dns.CanonicalName(name)]...)
}

// Updates counts the updates applied and refused (bad or missing TSIG,
// outside the zone).
func (s *Server) Updates() (applied, refused int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.updates, s.refused
}

func (s *Server) inZone(name string) bool {
	name = dns.CanonicalName(name)
	return name == s.Zone || strings.HasSuffix(name, "."+s.Zone)
}

// ServeDNS answers queries and applies updates.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if r.Opcode == dns.OpcodeUpdate {
		s.update(w, r, m)
		return
	}
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := dns.CanonicalName(q.Name)
	if !s.inZone(name) {
		m.Rcode = dns.RcodeRefused
		m.Authoritative = false
		w.WriteMsg(m)
		return
	}
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: 1}
	}
	soa := &dns.SOA{Hdr: dns.RR_Header{Name: s.Zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 1},
		Ns: "ns." + s.Zone, Mbox: "hostmaster." + s.Zone, Serial: 1, Refresh: 60, Retry: 60, Expire: 600, Minttl: 1}
	s.mu.Lock()
	switch q.Qtype {
	case dns.TypeSOA:
		if name == s.Zone {
			m.Answer = append(m.Answer, soa)
		}
	case dns.TypeA:
		ip := s.a[name]
		if ip == nil {
			ip = net.IPv4(127, 0, 0, 1)
		}
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: ip})
	case dns.TypeTXT:
		for _, v := range s.txt[name] {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: []string{v}})
		}
	}
	s.mu.Unlock()
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, soa)
	}
	w.WriteMsg(m)
}

func (s *Server) update(w dns.ResponseWriter, r *dns.Msg, m *dns.Msg) {
	refuse := func(code int) {
		s.mu.Lock()
		s.refused++
		s.mu.Unlock()
		m.Rcode = code
		w.WriteMsg(m)
	}
	if r.IsTsig() == nil || w.TsigStatus() != nil {
		refuse(dns.RcodeRefused)
		return
	}
	if len(r.Question) != 1 || dns.CanonicalName(r.Question[0].Name) != s.Zone {
		refuse(dns.RcodeNotAuth)
		return
	}
	for _, rr := range r.Ns {
		if !s.inZone(rr.Header().Name) {
			refuse(dns.RcodeNotZone)
			return
		}
	}
	s.mu.Lock()
	for _, rr := range r.Ns {
		name := dns.CanonicalName(rr.Header().Name)
		switch v := rr.(type) {
		case *dns.TXT:
			val := strings.Join(v.Txt, "")
			if v.Hdr.Class == dns.ClassNONE { // delete this record
				s.txt[name] = removeValue(s.txt[name], val)
			} else {
				s.txt[name] = append(s.txt[name], val)
			}
		case *dns.A:
			if v.Hdr.Class == dns.ClassNONE {
				delete(s.a, name)
			} else {
				s.a[name] = v.A
			}
		}
	}
	s.updates++
	s.mu.Unlock()
	m.SetTsig(s.KeyName, dns.HmacSHA256, 300, int64(r.IsTsig().TimeSigned))
	w.WriteMsg(m)
}

func removeValue(vs []string, v string) []string {
	out := vs[:0]
	for _, x := range vs {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}
