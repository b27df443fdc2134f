// Node 20 lacks Promise.withResolvers (Node 22 has it), which js-libp2p 3
// uses; Debian's nodejs is 20. Imported before anything else.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
