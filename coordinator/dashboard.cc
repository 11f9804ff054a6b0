#include "coordinator/dashboard.h"

namespace segue {

const char* DashboardHtml() {
  return R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>segue</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;background:#15171c;color:#e4e6eb}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px;color:#aab}
.muted{color:#8a8f98} table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #2a2d35;vertical-align:middle}
th{color:#8a8f98;font-weight:normal}
.bar{position:relative;width:220px;height:14px;background:#2a2d35;border-radius:3px;overflow:hidden}
.bar>i{position:absolute;left:0;top:0;bottom:0;background:#4c9aff}
.strip{display:flex;gap:1px;max-width:560px;flex-wrap:wrap}
.strip>b{width:6px;height:14px;border-radius:1px;background:#3a3f4a}
.strip>b.d{background:#36b37e}.strip>b.r{background:#ffab00}.strip>b.x{background:#ff5630}
.state{font-weight:600}.DONE{color:#36b37e}.FAILED{color:#ff5630}.RUNNING{color:#4c9aff}
.CANCELLED{color:#8a8f98}.STITCHING{color:#ffab00}
</style></head><body>
<h1>segue</h1><div class="muted" id="updated">connecting...</div>
<h2>Jobs</h2>
<table><thead><tr><th>id</th><th>name</th><th>state</th><th>progress</th><th>frames</th>
<th>ETA</th><th>segments</th><th>output / error</th></tr></thead><tbody id="jobs"></tbody></table>
<h2>Workers</h2>
<table><thead><tr><th>name</th><th>host</th><th>device</th><th>pool</th><th>state</th><th>task</th>
<th>done</th><th>failures</th></tr></thead><tbody id="workers"></tbody></table>
<h2>Pools</h2>
<table><thead><tr><th>pool</th><th>provider</th><th>size</th><th>members</th><th>autoscale</th>
<th>last change</th></tr></thead><tbody id="pools"></tbody></table>
<script>
function esc(s){return String(s??'').replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]))}
function eta(s){if(s==null||s<0)return '';s=Math.round(s);const m=Math.floor(s/60);return m+':'+String(s%60).padStart(2,'0')}
function strip(st){return '<div class="strip">'+[...(st||'')].map(c=>'<b class="'+({'#':'d','>':'r','x':'x'}[c]||'')+'"></b>').join('')+'</div>'}
async function tick(){
  try{
    const r=await fetch('/api/v1/status',{cache:'no-store'});const s=await r.json();
    document.getElementById('jobs').innerHTML=s.jobs.map(j=>{const p=Math.round(j.progress*100);
      return `<tr class="job" data-id="${j.id}" data-progress="${p}"><td>${j.id}</td><td>${esc(j.name)}</td>`+
      `<td class="state ${j.state}">${j.state}</td><td><div class="bar"><i style="width:${p}%"></i></div>`+
      `<span class="pct">${p}%</span></td><td>${j.frames.done}/${j.frames.total}</td><td>${eta(j.eta_seconds)}</td>`+
      `<td>${strip(j.segments.states)}</td><td>${esc(j.output||j.error||'')}</td></tr>`}).join('');
    document.getElementById('workers').innerHTML=s.workers.map(w=>`<tr><td>${esc(w.name)}</td><td>${esc(w.host)}</td>`+
      `<td>${esc(w.device)}</td><td>${esc(w.pool)}</td><td>${esc(w.state)}</td><td>${esc(w.task)}</td>`+
      `<td>${w.tasks_done}</td><td>${w.failures}</td></tr>`).join('');
    document.getElementById('pools').innerHTML=s.pools.map(p=>`<tr><td>${esc(p.name)}</td><td>${esc(p.provider)}</td>`+
      `<td>${p.size}</td><td>${p.members}</td><td>${p.autoscale?'on ('+p.min+'-'+p.max+')':'off'}</td>`+
      `<td>${esc(p.last_change)}</td></tr>`).join('');
    document.getElementById('updated').textContent='updated '+new Date().toLocaleTimeString();
  }catch(e){document.getElementById('updated').textContent='coordinator unreachable: '+e}
}
tick();setInterval(tick,1000);
</script></body></html>
)HTML";
}

}  // namespace segue
