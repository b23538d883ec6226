# The service image for docker-compose. Node 24 LTS; runs the TypeScript sources through tsx.
FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY src ./src
COPY projections ./projections
COPY migrations ./migrations
COPY bin ./bin
COPY tsconfig.json ./
USER node
EXPOSE 3000
CMD ["node", "--import", "tsx", "src/main.ts"]
