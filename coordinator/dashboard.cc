#include "coordinator/dashboard.h"

#include <string>

namespace segue {
namespace {

// Both pages' reads and actions: the token a farm asks for, kept in the browser.
constexpr const char* kAuthJs =
    R"JS(function auth(){return localStorage.segueToken?{'Authorization':'Bearer '+localStorage.segueToken}:{}}
function keep(t){localStorage.segueToken=t;document.cookie='segue_token='+encodeURIComponent(t)+'; path=/; SameSite=Strict'}
let asked=false;
// A read; a farm whose HTTP port needs a token for reads asks for one once (kept in this browser,
// and as a cookie for the thumbnails and the video, which the browser fetches by itself).
async function get(url){
  let r=await fetch(url,{cache:'no-store',headers:auth()});
  if(r.status===401&&!asked){asked=true;const t=prompt('This coordinator needs a token (segue token) to read:');
    if(t){keep(t);r=await fetch(url,{cache:'no-store',headers:auth()})}}
  return r}
if(localStorage.segueToken)keep(localStorage.segueToken);
)JS";

}  // namespace

const char* DashboardHtml() {
  static const std::string page =
      std::string(R"HTML(<!doctype html>
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
.CANCELLED{color:#8a8f98}.STITCHING{color:#ffab00} a{color:#8cb4ff}
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
)HTML") +
      kAuthJs +
      R"HTML(function esc(s){return String(s??'').replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]))}
function eta(s){if(s==null||s<0)return '';s=Math.round(s);const m=Math.floor(s/60);return m+':'+String(s%60).padStart(2,'0')}
function strip(st){return '<div class="strip">'+[...(st||'')].map(c=>'<b class="'+({'#':'d','>':'r','x':'x'}[c]||'')+'"></b>').join('')+'</div>'}
async function tick(){
  try{
    const r=await get('/api/v1/status');const s=await r.json();
    document.getElementById('jobs').innerHTML=s.jobs.map(j=>{const p=Math.round(j.progress*100);
      return `<tr class="job" data-id="${j.id}" data-progress="${p}"><td><a href="/jobs/${j.id}">${j.id}</a></td><td><a href="/jobs/${j.id}">${esc(j.name)}</a></td>`+
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
  return page.c_str();
}

const char* JobPageHtml() {
  static const std::string page = std::string(R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>segue job</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;background:#15171c;color:#e4e6eb}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px;color:#aab}
a{color:#8cb4ff} .muted{color:#8a8f98}
.bar{position:relative;width:320px;height:14px;background:#2a2d35;border-radius:3px;overflow:hidden;display:inline-block;vertical-align:middle}
.bar>i{position:absolute;left:0;top:0;bottom:0;background:#4c9aff}
.strip{display:flex;gap:2px;flex-wrap:wrap;max-width:960px}
.strip>b{width:10px;height:18px;border-radius:2px;background:#3a3f4a}
.strip>b.d{background:#36b37e}.strip>b.r{background:#ffab00}.strip>b.x{background:#ff5630}
.thumbs{display:flex;gap:6px;flex-wrap:wrap}
.thumbs figure{margin:0;width:192px}.thumbs img{width:192px;border-radius:3px;background:#2a2d35;display:block}
.thumbs figcaption{color:#8a8f98;font-size:12px}
.takerow{margin:8px 0}.takerow>div{margin-bottom:4px}
.state{font-weight:600}.DONE{color:#36b37e}.FAILED{color:#ff5630}.RUNNING{color:#4c9aff}
.CANCELLED{color:#8a8f98}.STITCHING{color:#ffab00}
button,input{font:inherit;background:#2a2d35;color:#e4e6eb;border:1px solid #3a3f4a;border-radius:3px;padding:4px 10px}
button:hover{background:#3a3f4a} input{width:60px}
pre{background:#0e0f13;padding:8px;max-height:320px;overflow:auto;font-size:12px}
video{max-width:960px;width:100%;background:#000}
#said{margin-left:8px}
</style></head><body>
<div><a href="/">&larr; all jobs</a></div>
<h1 id="title">job</h1>
<div><span class="state" id="state"></span> <span class="muted" id="who"></span></div>
<div style="margin:8px 0"><div class="bar"><i id="bar"></i></div> <span id="pct"></span>
 <span class="muted" id="frames"></span> <span class="muted" id="eta"></span></div>
<div id="error" style="color:#ff5630"></div>
<div id="actions">
 <button id="cancel">Cancel</button> <button id="retry">Retry</button>
 priority <input id="priority" type="number" min="0" max="100"> <button id="setprio">Set</button>
 <span id="said" class="muted"></span>
</div>
<div id="family" class="muted"></div>
<div id="previewbox" hidden><h2>Preview</h2><div id="preview" class="muted"></div></div>
<div id="takesbox" hidden><h2>Takes</h2>
<div class="muted">each section's takes, a thumbnail of the section's middle segment per take; pick one with
<code>segue pick JOB SECTION TAKE</code></div><div id="takes"></div></div>
<h2>Segments</h2><div class="strip" id="strip"></div>
<h2>Finished segments</h2><div class="thumbs" id="thumbs"></div>
<h2>Video</h2><div id="video" class="muted">the video plays here once the job is DONE</div>
<h2>Log</h2><pre id="log"></pre>
<script>
const id=location.pathname.split('/').filter(Boolean).pop();
const api='/api/v1/jobs/'+id;
function esc(s){return String(s??'').replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]))}
function eta(s){if(s==null||s<0)return '';s=Math.round(s);const m=Math.floor(s/60);return 'ETA '+m+':'+String(s%60).padStart(2,'0')}
)HTML") + kAuthJs + R"HTML(const shown=new Set();
async function act(path,body){
  const said=document.getElementById('said');
  const send=()=>fetch(api+path,{method:'POST',headers:Object.assign({'Content-Type':'application/json'},
      auth()),body:JSON.stringify(body||{})});
  let r=await send();
  if(r.status===401){const t=prompt('This coordinator needs a token (segue token) for actions:');
    if(t){keep(t);r=await send()}}
  const j=await r.json().catch(()=>({}));
  said.textContent=r.ok?'done: '+j.state:(j.error?j.error.code+': '+j.error.message:'HTTP '+r.status);
  tick();
}
document.getElementById('cancel').onclick=()=>act('/cancel');
document.getElementById('retry').onclick=()=>act('/retry');
document.getElementById('setprio').onclick=()=>act('/priority',{priority:Number(document.getElementById('priority').value)});
async function tick(){
  const r=await get(api);
  if(!r.ok){document.getElementById('title').textContent='no job '+id;return}
  const j=await r.json();const p=Math.round(j.progress*100);
  document.title='segue: '+j.name;
  document.getElementById('title').textContent=j.name+' (job '+j.id+')';
  const st=document.getElementById('state');st.textContent=j.state;st.className='state '+j.state;
  document.body.dataset.state=j.state;
  document.getElementById('who').textContent='owner '+j.owner+(Object.keys(j.metadata).length?' \u00b7 '+
      Object.entries(j.metadata).map(([k,v])=>k+'='+v).join(' '):'');
  document.getElementById('bar').style.width=p+'%';document.getElementById('pct').textContent=p+'%';
  document.getElementById('frames').textContent=j.frames.done+'/'+j.frames.total+' frames';
  document.getElementById('eta').textContent=eta(j.eta_seconds);
  document.getElementById('error').textContent=j.error||'';
  const prio=document.getElementById('priority');if(document.activeElement!==prio)prio.value=j.priority;
  const states=j.segments.states;
  document.getElementById('strip').innerHTML=[...states].map((c,i)=>'<b title="segment '+i+'" class="'+
      ({'#':'d','>':'r','x':'x'}[c]||'')+'"></b>').join('');
  const thumbs=document.getElementById('thumbs');
  [...states].forEach((c,i)=>{if(c!=='#'||shown.has(i))return;shown.add(i);
    const f=document.createElement('figure');const img=document.createElement('img');
    img.dataset.segment=i;img.alt='segment '+i;
    img.onload=()=>{img.dataset.loaded=img.naturalWidth>0?'1':'0'};img.onerror=()=>{img.dataset.loaded='0'};
    img.src=api+'/segments/'+i+'/thumbnail';
    f.appendChild(img);f.insertAdjacentHTML('beforeend','<figcaption>segment '+i+'</figcaption>');
    const after=[...thumbs.children].find(e=>Number(e.firstChild.dataset.segment)>i);
    thumbs.insertBefore(f,after||null)});
  await family(j);
  const v=document.getElementById('video');
  if(j.state==='DONE')play(v,api+'/output','output');
  const l=await get(api+'/logs');
  if(l.ok){const lines=(await l.json()).lines.slice(-300);
    document.getElementById('log').textContent=lines.map(x=>new Date(x.ms).toLocaleTimeString()+'  '+x.text).join('\n')}
}
// A video that plays `src` in `box` (once), its state and duration on the element for tests.
function play(box,src,role){
  if(box.querySelector('video'))return;
  box.innerHTML='<video controls preload="auto" playsinline data-role="'+role+'"></video><div><a download href="'+
      src+'">download</a></div>';
  const el=box.querySelector('video');el.dataset.state='loading';
  el.onloadeddata=()=>{el.dataset.state='loaded';el.dataset.duration=el.duration.toFixed(2)};
  el.onerror=()=>{el.dataset.state='error'};el.src=src}
// The job's family (docs/MANIFEST.md, Iterating): what it is of which job, its preview (played
// here as soon as it is delivered) and a contact sheet of its takes.
const takeCells=new Set();
async function family(j){
  const f=j.family||{};const link=i=>'<a href="/jobs/'+i+'">job '+i+'</a>';
  let said='';
  if(f.role==='preview')said='the preview of '+link(f.parent);
  if(f.role==='take')said='take '+f.take+' of section '+f.section+' of '+link(f.parent);
  if(f.role==='pick')said='picked from '+link(f.parent)+': '+f.picks.map(p=>'section '+p.section+' take '+p.take).join(', ');
  if(f.waiting_for)said+=(said?' \u00b7 ':'')+'waiting for '+link(f.waiting_for);
  document.getElementById('family').innerHTML=said;
  if(f.preview_job){
    document.getElementById('previewbox').hidden=false;
    const box=document.getElementById('preview');
    if(!box.querySelector('video')){
      const r=await get('/api/v1/jobs/'+f.preview_job);
      if(r.ok){const p=await r.json();
        if(p.state==='DONE')play(box,'/api/v1/jobs/'+p.id+'/output','preview');
        else box.innerHTML=link(p.id)+': '+esc(p.state)+' '+Math.round(p.progress*100)+'%'}}}
  if(f.role!=='final')return;
  const r=await get('/api/v1/jobs?family='+j.id);if(!r.ok)return;
  const takes=(await r.json()).jobs.filter(t=>t.family.role==='take');
  if(!takes.length)return;
  document.getElementById('takesbox').hidden=false;
  const sections={};takes.forEach(t=>(sections[t.family.section]=sections[t.family.section]||[]).push(t));
  const box=document.getElementById('takes');
  for(const [s,list] of Object.entries(sections)){
    let row=document.getElementById('section-'+s);
    if(!row){row=document.createElement('div');row.className='takerow';row.id='section-'+s;
      const f0=list[0].family;
      row.innerHTML='<div>section '+s+' (frames '+f0.section_frames[0]+'-'+f0.section_frames[1]+'): '+
          esc(f0.section_prompt)+'</div><div class="thumbs"></div>';box.appendChild(row)}
    const segs=list[0].family.section_segments;if(!segs.length)continue;
    const mid=segs[Math.floor(segs.length/2)];
    const cells=[{take:1,job:j}].concat(list.sort((a,b)=>a.family.take-b.family.take).map(t=>({take:t.family.take,job:t})));
    for(const c of cells){
      const key=s+'/'+c.take;const done=c.job.segments.states?c.job.segments.states[mid]==='#':c.job.segments.done===c.job.segments.total;
      if(takeCells.has(key)||!done)continue;takeCells.add(key);
      const fig=document.createElement('figure');const img=document.createElement('img');
      img.dataset.take=key;img.alt='section '+s+' take '+c.take;
      img.onload=()=>{img.dataset.loaded=img.naturalWidth>0?'1':'0'};img.onerror=()=>{img.dataset.loaded='0'};
      img.src='/api/v1/jobs/'+c.job.id+'/segments/'+mid+'/thumbnail';fig.appendChild(img);
      fig.insertAdjacentHTML('beforeend','<figcaption>take '+c.take+' \u00b7 <a href="/jobs/'+c.job.id+'">job '+
          c.job.id+'</a> \u00b7 segue pick '+j.id+' '+s+' '+c.take+'</figcaption>');
      const thumbs=row.querySelector('.thumbs');
      const after=[...thumbs.children].find(e=>Number(e.firstChild.dataset.take.split('/')[1])>c.take);
      thumbs.insertBefore(fig,after||null)}}
}
tick();setInterval(tick,1000);
</script></body></html>
)HTML";
  return page.c_str();
}

}  // namespace segue
