// Tern web admin: the dashboard's live numbers and chart. Everything else works without it.
"use strict";
(function () {
  const chart = document.getElementById("chart");
  if (!chart) return;
  const SVG = "http://www.w3.org/2000/svg";
  const series = ["received", "delivered", "deferred", "bounced"];

  function text(id, value) {
    const el = document.getElementById(id);
    if (el) el.textContent = value;
  }
  function bytes(n) {
    if (n == null) return "?";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return i === 0 ? n + " B" : n.toFixed(1) + " " + units[i];
  }
  function ago(s) {
    if (s == null) return "-";
    if (s < 120) return s + " s";
    if (s < 7200) return Math.floor(s / 60) + " min";
    if (s < 172800) return Math.floor(s / 3600) + " h";
    return Math.floor(s / 86400) + " days";
  }

  function draw(minutes) {
    const w = 600, h = 180, n = Math.max(minutes.length, 1);
    let max = 1;
    for (const m of minutes) for (const s of series) max = Math.max(max, m[s]);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("preserveAspectRatio", "none");
    const slot = w / n, bar = Math.max(slot / series.length - 1, 0.5);
    minutes.forEach(function (m, i) {
      series.forEach(function (s, j) {
        if (!m[s]) return;
        const r = document.createElementNS(SVG, "rect");
        const bh = (m[s] / max) * (h - 10);
        r.setAttribute("x", String(i * slot + j * bar));
        r.setAttribute("y", String(h - bh));
        r.setAttribute("width", String(bar));
        r.setAttribute("height", String(bh));
        r.setAttribute("class", "bar-" + s);
        const title = document.createElementNS(SVG, "title");
        title.textContent = new Date(m.ends * 1000).toLocaleTimeString() + ": " + m[s] + " " + s;
        r.appendChild(title);
        svg.appendChild(r);
      });
    });
    chart.replaceChildren(svg);
  }

  function refresh() {
    fetch(chart.dataset.source, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (s) {
        const last = s.per_minute[s.per_minute.length - 1] || {};
        const sum = function (k) { return s.per_minute.reduce(function (a, m) { return a + m[k]; }, 0); };
        text("received-minute", last.received || 0);
        text("received-hour", sum("received"));
        text("delivered-minute", last.delivered || 0);
        text("delivered-hour", sum("delivered"));
        text("queue-depth", s.queue_messages);
        text("queue-oldest", ago(s.queue_oldest_seconds));
        text("mail-bytes", bytes(s.mail_bytes));
        text("disk-free", bytes(s.disk_free_bytes));
        text("uptime", ago(s.uptime_seconds));
        text("store-health", s.store_healthy ? "healthy" : "NOT writable");
        const body = document.querySelector("#refused-table tbody");
        if (body) {
          const rows = s.refused_last_hour.map(function (r) {
            const tr = document.createElement("tr");
            const a = document.createElement("td"), b = document.createElement("td");
            a.textContent = r[0]; b.textContent = r[1]; b.className = "num";
            tr.append(a, b);
            return tr;
          });
          if (rows.length === 0) {
            const tr = document.createElement("tr"), td = document.createElement("td");
            td.colSpan = 2; td.textContent = "nothing refused"; tr.append(td); rows.push(tr);
          }
          body.replaceChildren.apply(body, rows);
        }
        draw(s.per_minute);
        chart.dataset.updated = String(Date.now());
      })
      .catch(function () { /* keep the last picture; the next tick tries again */ });
  }
  refresh();
  setInterval(refresh, 10000);
})();
