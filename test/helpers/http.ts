export interface Answer<T = any> {
  status: number
  headers: Headers
  body: T
}

/** fetch with JSON in and out; never throws on a 4xx/5xx, tests assert on it. */
export async function http<T = any>(
  method: string,
  url: string,
  options: {json?: unknown; body?: string; headers?: Record<string, string>} = {},
): Promise<Answer<T>> {
  const headers: Record<string, string> = {...options.headers}
  let body: string | undefined = options.body
  if (options.json !== undefined) {
    headers['content-type'] ??= 'application/json'
    body = JSON.stringify(options.json)
  }
  const response = await fetch(url, {method, headers, body})
  const text = await response.text()
  let parsed: unknown = text
  if (/json/.test(response.headers.get('content-type') ?? '') && text) parsed = JSON.parse(text)
  return {status: response.status, headers: response.headers, body: parsed as T}
}
