/** Protocol errors of the HTTP/1.1 codec, each with the status a server answers it with. */

/** Why a message was rejected; `status` is what a server answers (400, 413, 414, 417, 431, 501, 505). */
export class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = "HttpError";
  }
}

export const badRequest = (message: string) => new HttpError(400, message);
